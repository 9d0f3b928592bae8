import json
import os

import pytest

from vlgen.fileio import JsonlAppender, atomic_write_text, write_json


def test_atomic_write_leaves_no_temp_files(tmp_path):
    p = atomic_write_text(tmp_path / "a" / "b.txt", "héllo")
    assert p.read_text(encoding="utf-8") == "héllo"
    write_json(tmp_path / "a" / "c.json", {"x": 1})
    assert sorted(f.name for f in (tmp_path / "a").iterdir()) == ["b.txt", "c.json"]


def test_appender_drops_a_partial_last_line_from_a_killed_run(tmp_path):
    p = tmp_path / "out.jsonl"
    p.write_text('{"file_name": "a.png"}\n{"file_na')  # killed mid-write
    with JsonlAppender(p) as w:
        w.write({"file_name": "b.png"})
    rows = [json.loads(line) for line in p.read_text().splitlines()]
    assert rows == [{"file_name": "a.png"}, {"file_name": "b.png"}]


def test_read_jsonl_objects_locates_every_kind_of_bad_line(tmp_path):
    import pytest

    from vlgen.errors import DataError
    from vlgen.fileio import read_jsonl_objects

    good = tmp_path / "good.jsonl"
    good.write_bytes(b'{"a": 1}\n\n{"a": 2}\n')
    assert read_jsonl_objects(good) == [(1, {"a": 1}), (3, {"a": 2})]
    for body, line, reason in [
        (b'{"a": 1}\n{"a": \xff}\n', 2, "not valid UTF-8"),
        (b'{"a": 1}\n{"a": \n', 2, "not valid JSON"),
        (b"[1, 2]\n", 1, "expected a JSON object, got list"),
    ]:
        bad = tmp_path / "bad.jsonl"
        bad.write_bytes(body)
        with pytest.raises(DataError, match=reason) as e:
            read_jsonl_objects(bad)
        assert e.value.line == line and str(bad) in str(e.value)


def test_atomic_directory_replaces_on_success_and_keeps_the_old_copy_on_error(tmp_path):
    import stat

    from vlgen.fileio import atomic_directory

    out = tmp_path / "model"
    with atomic_directory(out) as tmp:
        (tmp / "weights.bin").write_bytes(b"v1")
        os.chmod(tmp / "weights.bin", 0o600)  # as safetensors writes its files
    assert (out / "weights.bin").read_bytes() == b"v1"
    assert stat.S_IMODE((out / "weights.bin").stat().st_mode) == 0o666 & ~_current_umask()
    with pytest.raises(RuntimeError), atomic_directory(out) as tmp:
        (tmp / "weights.bin").write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert (out / "weights.bin").read_bytes() == b"v1"  # the old copy, complete
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temp folder left behind


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- crash windows of a directory replacement (issue 16): a crash at any point leaves a complete old or new
# copy once recover_directory has run (atomic_directory runs it first). The crash is a real one: a child process
# that dies with os._exit between two steps, so no `except`/`finally` of fileio gets to tidy up.

_CRASH_CHILD = r"""
import os, shutil, sys
from pathlib import Path
import vlgen.fileio as fileio

out, when = Path(sys.argv[1]), sys.argv[2]
real_replace, real_rmtree, renames = os.replace, shutil.rmtree, []

def replace(src, dst):
    real_replace(src, dst)
    renames.append(dst)
    if (when, len(renames)) in (("after-aside", 1), ("after-new-in", 2)):
        os._exit(3)

def rmtree(path, ignore_errors=False):
    if when == "during-delete" and Path(path).name == ".model.old":
        next(Path(path).iterdir()).unlink()  # one file of the old copy gone, then the crash
        os._exit(3)
    real_rmtree(path, ignore_errors=ignore_errors)

fileio.os.replace, fileio.shutil.rmtree = replace, rmtree
with fileio.atomic_directory(out) as tmp:
    (tmp / "a.bin").write_bytes(b"new")
    if when == "during-assembly":
        os._exit(3)
    (tmp / "b.bin").write_bytes(b"new")
"""


def _copy(out):
    return {p.name: p.read_bytes() for p in out.iterdir()}


@pytest.mark.parametrize(
    ("when", "survivor"),
    [("during-assembly", b"old"), ("after-aside", b"old"), ("after-new-in", b"new"), ("during-delete", b"new")],
)
def test_a_crash_at_any_step_of_a_directory_replacement_leaves_a_complete_copy(tmp_path, when, survivor):
    import subprocess
    import sys

    from vlgen.fileio import atomic_directory, recover_directory

    out = tmp_path / "model"
    with atomic_directory(out) as tmp:
        (tmp / "a.bin").write_bytes(b"old")
        (tmp / "b.bin").write_bytes(b"old")
    child = subprocess.run([sys.executable, "-c", _CRASH_CHILD, str(out), when], capture_output=True, text=True)
    assert child.returncode == 3, child.stderr
    if when == "after-aside":  # the window the old rmtree-then-rename had with neither copy; here one is aside
        assert not out.exists() and _copy(tmp_path / ".model.old") == {"a.bin": b"old", "b.bin": b"old"}
    recover_directory(out)
    assert _copy(out) == {"a.bin": survivor, "b.bin": survivor}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no `.model.old`, no dead process's temp
    with atomic_directory(out) as tmp:  # and the next run replaces it as usual
        (tmp / "c.bin").write_bytes(b"next")
    assert _copy(out) == {"c.bin": b"next"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_an_error_while_renaming_the_new_copy_in_puts_the_old_one_back(tmp_path, monkeypatch):
    import vlgen.fileio as fileio

    out = tmp_path / "model"
    with fileio.atomic_directory(out) as tmp:
        (tmp / "a.bin").write_bytes(b"old")
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # step 2, the new copy in
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", replace)
    with pytest.raises(OSError, match="No space"), fileio.atomic_directory(out) as tmp:
        (tmp / "a.bin").write_bytes(b"new")
    monkeypatch.undo()
    assert _copy(out) == {"a.bin": b"old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_recover_directory_keeps_a_live_process_temp_folder_and_is_a_no_op_on_a_clean_tree(tmp_path):
    import socket

    from vlgen.fileio import recover_directory

    live = tmp_path / f".model.{os.getpid()}@{socket.gethostname()}-abc123.tmp"  # this process: still writing
    other_host = tmp_path / ".model.1@another-host-abc123.tmp"  # can't tell whether it is alive: kept
    for d in (live, other_host):
        d.mkdir()
    (tmp_path / "model").mkdir()
    recover_directory(tmp_path / "model")
    recover_directory(tmp_path / "absent")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", live.name, other_host.name])


def test_atomic_file_leaves_the_old_file_after_a_crash_and_gives_plain_modes(tmp_path):
    import stat
    import subprocess
    import sys

    from vlgen.fileio import atomic_file, atomic_write_bytes

    path = atomic_write_bytes(tmp_path / "w.safetensors", b"old")
    code = (
        "import os, sys\nfrom vlgen.fileio import atomic_file\n"
        "with atomic_file(sys.argv[1]) as tmp:\n    open(tmp, 'wb').write(b'ne')\n    os._exit(3)\n"
    )
    assert subprocess.run([sys.executable, "-c", code, str(path)]).returncode == 3
    assert path.read_bytes() == b"old"
    with atomic_file(path) as tmp:
        tmp.write_bytes(b"new")
        os.chmod(tmp, 0o600)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_current_umask()
    with pytest.raises(RuntimeError), atomic_file(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("failed mid-write")
    assert path.read_bytes() == b"new"
    leftovers = [p.name for p in tmp_path.iterdir() if p != path]
    assert len(leftovers) == 1 and leftovers[0].endswith(".tmp")  # the killed writer's temp file, nothing else


def test_the_lenient_jsonl_reader_keeps_objects_and_leaves_out_every_other_line(tmp_path):
    from vlgen.fileio import parse_json_object, read_jsonl_objects_lenient

    p = tmp_path / "skipped.jsonl"
    p.write_bytes(b'{"a": 1}\n\n[1]\n"s"\n{"a": \xff}\n{"a": 2}\n{"file_na')  # the last line cut off by a kill
    assert read_jsonl_objects_lenient(p) == [{"a": 1}, {"a": 2}]
    assert read_jsonl_objects_lenient(p.read_bytes().split(b"\n")) == [{"a": 1}, {"a": 2}]
    assert parse_json_object('{"x": 1}') == {"x": 1} and parse_json_object(b"[]") is None


def test_jsonl_appender_defers_fsync_to_sync_but_flushes_every_row(tmp_path, monkeypatch):
    """Batch writers (vlgen caption) fsync once per batch: rows written with sync=False are readable at once (a
    killed process loses none) and reach the disk at `sync()`."""
    import os

    from vlgen.fileio import JsonlAppender

    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    path = tmp_path / "out.jsonl"
    with JsonlAppender(path) as w:
        for i in range(5):
            w.write({"i": i}, sync=False)
        assert path.read_text().count("\n") == 5 and calls == []
        w.sync()
        assert len(calls) == 1
        w.write({"i": 5})  # the default stays durable per row
        assert len(calls) == 2

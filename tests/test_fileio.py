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

"""`vlgen caption`: batching, output format, resume after a kill, bad images."""

import json

import pytest
from PIL import Image

from vlgen.captioning.batch import caption_images, collect_inputs
from vlgen.captioning.registry import load_captioner
from vlgen.cli import main
from vlgen.data.synth import synth_dataset
from vlgen.errors import DataError, ImageLoadError


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "data"
    synth_dataset(out, n=20, seed=0, image_size=32)
    return out


def _rows(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


class CountingCaptioner:
    """Wraps a real captioner and records batch sizes."""

    def __init__(self, inner):
        self.inner, self.batches = inner, []

    def generate(self, images, **kw):
        self.batches.append(len(images))
        return self.inner.generate(images, **kw)


def test_dataset_split_gives_dataset_relative_names(synth, tiny_cnn_lstm_dir, tmp_path):
    items = collect_inputs([synth], split="test")
    assert items and all(not name.startswith("/") for name, _ in items)
    cap = CountingCaptioner(load_captioner(tiny_cnn_lstm_dir))
    out = tmp_path / "caps.jsonl"
    s = caption_images(cap, items, out, batch_size=3, num_beams=2, max_new_tokens=5)
    assert s.captioned == len(items)
    assert cap.batches == [3] * (len(items) // 3) + ([len(items) % 3] if len(items) % 3 else [])
    rows = _rows(out)
    assert [r["file_name"] for r in rows] == [n for n, _ in items]
    assert set(rows[0]) == {"file_name", "caption"}


def test_rerun_after_kill_captions_every_image_exactly_once(synth, tiny_cnn_lstm_dir, tmp_path):
    items = collect_inputs([synth])
    out = tmp_path / "caps.jsonl"
    cap = load_captioner(tiny_cnn_lstm_dir)
    caption_images(cap, items[:7], out, batch_size=4)
    with open(out, "a") as f:  # what a SIGKILL in the middle of a write leaves behind
        f.write('{"file_name": "0000')
    s = caption_images(cap, items, out, batch_size=4)
    assert s.already_done == 7 and s.captioned == len(items) - 7
    names = [r["file_name"] for r in _rows(out)]
    assert sorted(names) == sorted(n for n, _ in items) and len(names) == len(set(names))


def test_bad_image_fails_naming_file_or_is_skipped_without_losing_its_batch(tmp_path, tiny_cnn_lstm_dir, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(5):
        Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(folder / f"{i}.png")
    (folder / "2b.png").write_bytes(b"not an image at all")
    out = tmp_path / "caps.jsonl"
    code = main(["caption", str(folder), "--model", str(tiny_cnn_lstm_dir), "--out", str(out), "--batch-size", "3"])
    err = capsys.readouterr().err
    assert code == 1 and "2b.png" in err and "Traceback" not in err
    code = main(
        ["caption", str(folder), "--model", str(tiny_cnn_lstm_dir), "--out", str(out), "--on-error", "skip"]
        + ["--batch-size", "3"]
    )
    err = capsys.readouterr().err
    assert code == 0 and "skipped 1" in err
    assert sorted(r["file_name"] for r in _rows(out)) == ["0.png", "1.png", "2.png", "3.png", "4.png"]
    skipped = _rows(tmp_path / "caps.skipped.jsonl")
    assert [s["file_name"] for s in skipped] == ["2b.png"] and skipped[0]["reason"]
    with pytest.raises(ImageLoadError, match="2b.png"):
        caption_images(load_captioner(tiny_cnn_lstm_dir), [("2b.png", folder / "2b.png")], None, echo=print)


def test_stdout_when_no_out_and_input_errors(tmp_path, tiny_cnn_lstm_dir, capsys):
    img = tmp_path / "a.png"
    Image.new("RGB", (20, 20)).save(img)
    assert main(["caption", str(img), "--model", str(tiny_cnn_lstm_dir), "--num-beams", "1"]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert row["file_name"] == str(img) and isinstance(row["caption"], str)
    with pytest.raises(DataError, match="no such file or folder"):
        collect_inputs([tmp_path / "missing"])
    assert main(["caption", str(img), "--model", str(tiny_cnn_lstm_dir), "--on-error", "ignore"]) == 2
    assert "--on-error" in capsys.readouterr().err


@pytest.mark.parametrize(("num_beams", "expected"), [(1, [20]), (4, [8, 8, 4]), (3, [10, 10])])
def test_default_batch_size_keeps_decoding_sequences_per_pass_constant(synth, tiny_cnn_lstm_dir, num_beams, expected):
    # 20 images; no batch_size given: 32 // num_beams images per pass (32 sequences with beams).
    counting = CountingCaptioner(load_captioner(str(tiny_cnn_lstm_dir)))
    rows: list[dict] = []
    caption_images(counting, collect_inputs([synth], split=None), None, num_beams=num_beams, max_new_tokens=5,
                   echo=rows.append)  # fmt: skip
    assert counting.batches == expected
    assert len(rows) == 20


def test_rerun_keeps_a_complete_last_row_without_its_newline(synth, tiny_cnn_lstm_dir, tmp_path):
    items = collect_inputs([synth])
    out = tmp_path / "caps.jsonl"
    cap = load_captioner(tiny_cnn_lstm_dir)
    caption_images(cap, items[:7], out, batch_size=4)
    finished = out.read_bytes()[:-1]  # the last row is complete, only its newline is missing
    out.write_bytes(finished)
    s = caption_images(cap, items, out, batch_size=4)
    assert s.already_done == 7 and s.captioned == len(items) - 7
    assert out.read_bytes().startswith(finished + b"\n")  # no finished row rewritten
    names = [r["file_name"] for r in _rows(out)]
    assert sorted(names) == sorted(n for n, _ in items) and len(names) == len(set(names))


@pytest.mark.parametrize(
    "body",
    [
        b"just some notes\n",
        b"unterminated notes",  # one unparsable unterminated line, with no caption row before it
        b'{"a": 1}\n{"b": 2}\n',  # JSONL, but not caption rows
        b'{"file_name": "0000.png", "caption": "x"}\nnot a row\n{"file_name": "0001.png", "caption": "y"}\n',
    ],
)
def test_out_that_is_not_a_caption_file_is_refused_untouched(synth, tiny_cnn_lstm_dir, tmp_path, capsys, body):
    out = tmp_path / "notes.txt"
    out.write_bytes(body)
    code = main(["caption", str(synth), "--model", str(tiny_cnn_lstm_dir), "--out", str(out), "--num-beams", "1"])
    err = capsys.readouterr().err
    assert code == 1 and str(out) in err and "not a vlgen caption file" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert out.read_bytes() == body


def test_out_dev_stdout_streams_without_hanging(tmp_path, tiny_cnn_lstm_dir, capsys, monkeypatch):
    import os
    import subprocess
    import sys

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (20, 20), (i * 60, 0, 0)).save(folder / f"{i}.png")
    # stdout is a pipe, as in `vlgen caption ... --out /dev/stdout | wc -l`: reading it back would block.
    proc = subprocess.run(
        [sys.executable, "-m", "vlgen", "caption", str(folder), "--model", str(tiny_cnn_lstm_dir)]
        + ["--out", "/dev/stdout", "--num-beams", "1"],
        capture_output=True,
        timeout=120,
        env={**os.environ, "VLGEN_PROGRESS": "0"},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    rows = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    assert sorted(r["file_name"] for r in rows) == ["0.png", "1.png", "2.png"]
    assert "captioned 3 images" in proc.stderr.decode()
    # `--out -`: the same stream (in-process), and no file called "-"
    monkeypatch.chdir(tmp_path)
    assert main(["caption", str(folder), "--model", str(tiny_cnn_lstm_dir), "--out", "-", "--num-beams", "1"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 3 and "captioned 3 images" in captured.err
    assert not (tmp_path / "-").exists()


def test_out_that_is_a_folder_fails_in_one_line(tmp_path, tiny_cnn_lstm_dir, capsys):
    img = tmp_path / "a.png"
    Image.new("RGB", (20, 20)).save(img)
    code = main(["caption", str(img), "--model", str(tiny_cnn_lstm_dir), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and str(tmp_path) in err and "folder" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_plain_folder_refuses_a_link_out_of_the_folder(tmp_path):
    folder, outside = tmp_path / "imgs", tmp_path / "secret.png"
    folder.mkdir()
    Image.new("RGB", (20, 20)).save(folder / "a.png")
    Image.new("RGB", (20, 20)).save(outside)
    (folder / "b.png").symlink_to(outside)
    with pytest.raises(DataError, match="outside the folder") as e:
        collect_inputs([folder])
    assert "b.png" in str(e.value)
    (folder / "b.png").unlink()
    (folder / "c.png").symlink_to(folder / "a.png")  # a link inside the folder is fine
    assert [n for n, _ in collect_inputs([folder])] == ["a.png", "c.png"]


def test_rows_on_stdout_are_the_json_as_is(tmp_path, monkeypatch, capsys):
    class Fixed:
        def generate(self, images, **kw):
            return ["[bold]a[/bold] :dog: cat " + "word " * 30] * len(images)  # markup, emoji code, long line

    monkeypatch.setattr("vlgen.captioning.registry.load_captioner", lambda *a, **k: Fixed())
    img = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(img)
    assert main(["caption", str(img), "--out", "-"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["caption"].startswith("[bold]a[/bold] :dog: cat word")

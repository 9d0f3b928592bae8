"""Every output-path fault is one line naming the path and the fix, exit 1, no traceback - for every command.

Up-front checks (`vlgen.fileio.check_output_dir/check_output_file`) catch the common cases before any work;
the CLI's handler turns any later OSError on a path into the same kind of line (`vlgen.cli.os_error_line`).
Read-only folders are tested with chmod where that blocks writes (not as root) and by injecting the error.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from vlgen.cli import main, os_error_line
from vlgen.data.synth import synth_dataset

TINY_CNN_LSTM = ["--encoder", "tiny", "--encoder-weights", "none", "--image-size", "32"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    data = root / "data"
    synth_dataset(data, n=6, seed=0, image_size=32, progress=False)
    imgs = root / "imgs"
    imgs.mkdir()
    for i in range(2):
        Image.new("RGB", (16, 16), (i * 90, 0, 0)).save(imgs / f"{i}.png")
    preds = root / "preds.jsonl"
    preds.write_text(json.dumps({"prediction": "a red circle", "references": ["a red circle"]}) + "\n")
    return {"data": data, "imgs": imgs, "preds": preds}


def _argv(command: str, out: Path, inputs: dict[str, Path], model: Path) -> list[str]:
    data, imgs = str(inputs["data"]), str(inputs["imgs"])
    return {
        "caption": ["caption", imgs, "--model", str(model), "--out", str(out / "caps.jsonl")],
        "train caption": ["train", "caption", "--data", data, "--out", str(out), *TINY_CNN_LSTM],
        "train lora": ["train", "lora", "--base", "/nonexistent", "--data", imgs, "--instance-prompt", "TOK"]
        + ["--out", str(out)],
        "data synth": ["data", "synth", str(out), "--n", "4"],
        "data import": ["data", "import", "folder", imgs, str(out)],
        "tiny": ["tiny", "cnn-lstm", str(out)],
        "generate": ["generate", "a cat", "--base", "/nonexistent", "--out", str(out)],
        "evaluate captions": ["evaluate", "captions", str(inputs["preds"]), "--metrics", "bleu", "--out", str(out)],
        "evaluate images": ["evaluate", "images", imgs, "--metrics", "Gram", "--out", str(out)],
        "demo": ["demo", "--out", str(out)],
    }[command]


COMMANDS = [
    "caption", "train caption", "train lora", "data synth", "data import", "tiny", "generate",
    "evaluate captions", "evaluate images", "demo",
]  # fmt: skip


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_where_a_folder_is_needed(command, inputs, tiny_cnn_lstm_dir, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code = main(_argv(command, blocker / "sub", inputs, tiny_cnn_lstm_dir))
    line = _one_line(capsys)
    assert code == 1 and str(blocker) in line and "is a file" in line and "choose another path" in line
    assert blocker.read_text() == "x"


def test_caption_out_that_is_a_folder_and_autocaption_metadata_that_is_a_folder(
    inputs, tiny_cnn_lstm_dir, tmp_path, capsys
):
    assert main(["caption", str(inputs["imgs"]), "--model", str(tiny_cnn_lstm_dir), "--out", str(tmp_path)]) == 1
    line = _one_line(capsys)
    assert str(tmp_path) in line and "is a folder" in line and "file path" in line
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (16, 16)).save(folder / "a.png")
    (folder / "metadata.jsonl").mkdir()
    assert main(["autocaption", str(folder), "--model", str(tiny_cnn_lstm_dir)]) == 1
    line = _one_line(capsys)
    assert str(folder / "metadata.jsonl") in line and "is a folder" in line


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders anyway")
@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_only_folder(command, inputs, tiny_cnn_lstm_dir, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code = main(_argv(command, ro / "out", inputs, tiny_cnn_lstm_dir))
        line = _one_line(capsys)
        assert code == 1 and str(ro) in line and "permission denied" in line
    finally:
        ro.chmod(0o755)


def test_an_os_error_deep_inside_a_command_is_one_line(tmp_path, monkeypatch, capsys):
    # What a read-only folder, a full disk or a vanished mount does to the first write, wherever it happens.
    def denied(path, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(Path(path).parent / ".metadata.jsonl.x1.tmp"))

    monkeypatch.setattr("vlgen.data.records.write_jsonl", denied)
    monkeypatch.setenv("VLGEN_PROGRESS", "0")
    assert main(["data", "synth", str(tmp_path / "d"), "--n", "4"]) == 1
    line = _one_line(capsys)
    assert f"cannot write in the folder {tmp_path / 'd'}: permission denied" in line


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/x/out"), "/x/out: it is a folder where a file is needed"),
        (FileExistsError(errno.EEXIST, "File exists", "/x/f"), "/x/f: a file is in the way where a folder is needed"),
        (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/x/f/o"), "/x/f/o: a part of this path is a file"),
        (OSError(errno.ENOSPC, "No space left on device", "/x/o"), "/x/o: no space left on the device"),
        (PermissionError(errno.EACCES, "Permission denied", "/x/.a.json.k.tmp"), "cannot write in the folder /x"),
    ],
)
def test_os_error_line_names_the_path_and_the_fix(error, expected):
    assert expected in os_error_line(error)
    assert os_error_line(OSError("no path")) is None  # not a path fault: a bug, keeps its traceback

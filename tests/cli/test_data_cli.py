"""`vlgen data` wiring: commands exist, options reach the library, user errors are one line, exit codes hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from vlgen.cli import main
from vlgen.cli.data import DEFAULT_MAX_PIXELS
from vlgen.data import DEFAULT_MAX_PIXELS as LIBRARY_MAX_PIXELS


def test_help_lists_commands(capsys) -> None:
    assert main(["data", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in ("import", "validate", "synth"))
    assert main(["data", "import", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(src in out for src in ("flickr8k", "coco", "diffusiondb", "folder"))


def test_cli_default_pixel_limit_matches_library() -> None:
    assert DEFAULT_MAX_PIXELS == LIBRARY_MAX_PIXELS


def test_synth_then_validate(tmp_path: Path, capsys) -> None:
    out = tmp_path / "synth"
    argv = ["data", "synth", str(out), "--n", "10", "--seed", "9", "--style", "--image-size", "32"]
    assert main([*argv, "--split-ratios", "0.8,0.2,0"]) == 0
    assert "wrote 10 images" in capsys.readouterr().err
    info = json.loads((out / "import.json").read_text())
    assert (
        info["style"] == "glossy"
        and info["seed"] == 9
        and info["split_sizes"] == {"train": 8, "validation": 2, "test": 0}
    )
    assert Image.open(out / "000000.png").size == (32, 32)
    assert main(["data", "validate", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith("10 rows, 10 valid (train 8, validation 2); OK")
    assert main(argv) == 1  # OUT is not empty now
    assert "error:" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_validate_broken_dataset_exit_1(tmp_path: Path, capsys) -> None:
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "gone.png", "text": "x"}\n')
    assert main(["data", "validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{tmp_path / 'metadata.jsonl'}:1: image 'gone.png': file not found"
    assert out[-1].endswith("1 rows, 0 valid (no splits); 1 problem(s)")


@pytest.mark.parametrize(
    "argv,message",
    [
        (["data", "synth", "{out}", "--split-ratios", "0.5,0.5"], "error: --split-ratios '0.5,0.5': expected three"),
        (["data", "synth", "{out}", "--n", "0"], "error: --n must be positive"),
        (["data", "import", "folder", "{tmp}/nope", "{out}"], "nope: source folder not found"),
        (["data", "import", "coco", "{tmp}/a.json", "{tmp}", "{out}"], "a.json: file not found"),
        (["data", "import", "diffusiondb", "{tmp}", "{out}"], "metadata.parquet not found"),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path: Path, capsys, argv: list, message: str) -> None:
    args = [a.format(tmp=tmp_path, out=tmp_path / "out") for a in argv]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_on_error_value_is_rejected_before_any_work(tmp_path: Path, capsys) -> None:
    assert main(["data", "import", "folder", str(tmp_path), str(tmp_path / "o"), "--on-error", "ignore"]) == 1
    assert "error: --on-error 'ignore': expected 'fail' or 'skip'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_import_folder_via_cli(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for colour in ["red", "blue", "green"]:
        Image.new("RGB", (6, 6), colour).save(src / f"{colour}.png")
        (src / f"{colour}.txt").write_text(f"a {colour} square")
    (src / "broken.png").write_bytes(b"not a png")
    (src / "broken.txt").write_text("a broken square")
    out = tmp_path / "out"
    assert main(["data", "import", "folder", str(src), str(out)]) == 1
    assert "broken.png: not an image" in capsys.readouterr().err
    assert main(["data", "import", "folder", str(src), str(out), "--on-error", "skip", "--overwrite"]) == 0
    assert "skipped (errors): 1 item(s)" in capsys.readouterr().err
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert sorted(r["text"] for r in rows) == ["a blue square", "a green square", "a red square"]
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(s["item"], s["kind"]) for s in skipped] == [("broken.png", "error")]

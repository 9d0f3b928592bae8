"""One message is one line at any terminal width: errors, skip reports, summaries and tables of real commands,
run in-process at COLUMNS=40 and 300 (as if the CLI had started under that COLUMNS, not on a tty)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from vlgen.cli import main
from vlgen.cli._console import err, out

WIDTHS = (40, 300)


@pytest.fixture
def columns(monkeypatch):
    """Set the terminal width the CLI sees, as COLUMNS does for a process started with it."""

    def set_to(n: int) -> None:
        monkeypatch.setenv("COLUMNS", str(n))
        monkeypatch.setenv("VLGEN_PROGRESS", "0")  # progress bars may adapt to the width; messages may not
        for console in (err, out):
            monkeypatch.setattr(console, "width", n)  # rich read COLUMNS once, when the CLI was imported

    return set_to


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _uncut(lines: list[str]) -> None:
    assert not any("…" in line for line in lines), lines  # rich's ellipsis overflow


@pytest.mark.parametrize("width", WIDTHS)
def test_caption_skip_report_and_summary_are_one_line_each(width, columns, tmp_path, tiny_cnn_lstm_dir, capsys):
    columns(width)
    folder = tmp_path / "a-folder-whose-name-alone-is-longer-than-forty-columns"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (20, 20), (i * 60, 0, 0)).save(folder / f"{i}.png")
    (folder / "broken-image-with-a-long-file-name.png").write_bytes(b"not an image at all")
    caps = tmp_path / "caps.jsonl"
    argv = ["caption", str(folder), "--model", str(tiny_cnn_lstm_dir), "--out", str(caps), "--on-error", "skip"]
    assert main([*argv, "--num-beams", "1"]) == 0
    lines = _lines(capsys.readouterr().err)
    _uncut(lines)
    assert len(lines) == 2, lines  # the skipped image, then the summary
    assert lines[0].startswith("skipped broken-image-with-a-long-file-name.png: ")
    assert lines[1].startswith("captioned 3 images, skipped 1 bad images") and lines[1].endswith(
        f"(listed in {caps.with_suffix('.skipped.jsonl')})"
    )
    assert max(map(len, lines)) > 40  # long enough to have been wrapped at 40 columns


@pytest.mark.parametrize("width", WIDTHS)
def test_errors_are_one_line(width, columns, tmp_path, tiny_cnn_lstm_dir, capsys):
    columns(width)
    missing = tmp_path / "there-is-no-image-by-this-rather-long-name-here.png"
    assert main(["caption", str(missing), "--model", str(tiny_cnn_lstm_dir)]) == 1
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0], lines

    # a usage error (click): one `Error:` line listing every choice
    assert main(["train", "lora", "--lr-scheduler", "not-a-schedule"]) != 0
    lines = _lines(capsys.readouterr().err)
    error = [line for line in lines if line.startswith("Error:")]
    assert len(error) == 1 and "not-a-schedule" in error[0] and "cosine-with-restarts" in error[0], lines


@pytest.mark.parametrize("width", WIDTHS)
def test_data_validate_problems_are_one_line_each(width, columns, tmp_path, capsys):
    columns(width)
    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (8, 8)).save(data / "ok.png")
    rows = [
        {"file_name": "ok.png", "text": "a red square", "split": "train"},
        {"file_name": "missing-image-with-a-long-name-for-wrapping.png", "text": "x", "split": "train"},
        {"file_name": "ok.png", "text": "a second row for the same image", "split": "a-split-name-nobody-uses"},
    ]
    (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", "validate", str(data)]) == 1
    captured = capsys.readouterr()
    lines = _lines(captured.out + captured.err)
    _uncut(lines)
    text = "\n".join(lines)
    assert any("missing-image-with-a-long-name-for-wrapping.png" in line and ":2" in line for line in lines), text
    assert any("a-split-name-nobody-uses" in line and ":3" in line for line in lines), text


def _compare_output(width: int, columns, tmp_path: Path, capsys) -> list[str]:
    columns(width)
    a = tmp_path / "metrics-of-the-pretrained-captioner-on-the-test-split.json"
    b = tmp_path / "metrics-of-the-fine-tuned-captioner-on-the-test-split.json"
    a.write_text(json.dumps({"BLEU-4": 0.27, "CIDEr": 1e-17, "BERTScore": 0.45, "n": 10, "settings": {}}))
    b.write_text(json.dumps({"BLEU-4": 0.78, "CIDEr": 0.5, "BERTScore": 0.78, "n": 10, "settings": {}}))
    assert main(["evaluate", "compare", str(a), str(b)]) == 0
    captured = capsys.readouterr()
    return _lines(captured.out + captured.err)


def test_tables_are_laid_out_at_their_own_width_not_the_terminals(columns, tmp_path, capsys):
    narrow = _compare_output(40, columns, tmp_path, capsys)
    wide = _compare_output(300, columns, tmp_path, capsys)
    _uncut(narrow)
    assert narrow == wide
    title = next(line for line in narrow if "A = " in line)
    assert re.search(r"A = \S+\.json\s+B = \S+\.json", title)  # the title is not wrapped either
    assert max(map(len, narrow)) > 40

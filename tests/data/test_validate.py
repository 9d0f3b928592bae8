"""`vlgen data validate`: one located line per problem, a summary, exit 1 - for every kind of bad input."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from datafixtures import write_image
from PIL import Image

from vlgen.cli import main
from vlgen.data.validate import validate_dataset

GOOD = {"file_name": "good.png", "text": "a fine picture", "split": "train"}


def _noise_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def _row(root: Path, row: dict | bytes) -> bytes:
    return row if isinstance(row, bytes) else json.dumps(row).encode()


def _write(root: Path, second: dict | bytes) -> None:
    write_image(root / "good.png")
    (root / "metadata.jsonl").write_bytes(_row(root, GOOD) + b"\n" + _row(root, second) + b"\n")


def _image_case(name: str, make: Callable[[Path], object]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        make(root / name)
        _write(root, {"file_name": name, "text": "x"})

    return setup


def _symlink_out(root: Path) -> None:
    write_image(root.parent / "outside.png")
    os.symlink(root.parent / "outside.png", root / "link.png")
    _write(root, {"file_name": "link.png", "text": "x"})


def _unlisted(root: Path) -> None:
    write_image(root / "b.png")
    _write(root, {"file_name": "b.png", "text": "x"})
    write_image(root / "stray.png")


# Each case: (how to break the dataset, text the report must contain, line it must name or None)
CASES: dict[str, tuple[Callable[[Path], object], str, int | None]] = {
    "malformed json": (lambda r: _write(r, b'{"file_name": "good.png",'), "invalid JSON", 2),
    "not utf-8": (lambda r: _write(r, b'{"file_name": "a.png", "text": "\xff"}'), "not valid UTF-8", 2),
    "not an object": (lambda r: _write(r, b"[1, 2]"), "expected a JSON object", 2),
    "missing file_name": (lambda r: _write(r, {"text": "x"}), "missing 'file_name'", 2),
    "missing caption": (lambda r: _write(r, {"file_name": "good.png"}), "missing caption column 'text'", 2),
    "empty caption": (lambda r: _write(r, {"file_name": "good.png", "text": ""}), "empty caption", 2),
    "duplicate": (lambda r: _write(r, GOOD), "duplicate file_name 'good.png' (first on line 1)", 2),
    "unknown split": (lambda r: _write(r, {**GOOD, "file_name": "x", "split": "dev"}), "unknown split 'dev'", 2),
    "escaping path": (lambda r: _write(r, {"file_name": "../good.png", "text": "x"}), "contains '..'", 2),
    "nul in file_name": (lambda r: _write(r, {"file_name": "a\x00b.png", "text": "x"}), "control character", 2),
    "newline in file_name": (lambda r: _write(r, {"file_name": "a\nb.png", "text": "x"}), "control character", 2),
    "absolute path": (lambda r: _write(r, {"file_name": "/etc/hosts", "text": "x"}), "absolute path", 2),
    "symlink out": (_symlink_out, "outside the dataset folder", 2),
    "missing image": (
        lambda r: _write(r, {"file_name": "nope.png", "text": "x"}),
        "image 'nope.png': file not found",
        2,
    ),
    "directory": (_image_case("sub", lambda p: p.mkdir()), "is a directory", 2),
    "empty image": (_image_case("e.png", lambda p: p.write_bytes(b"")), "empty file (0 bytes)", 2),
    "not an image": (_image_case("t.jpg", lambda p: p.write_text("hello")), "not an image", 2),
    "truncated png": (_image_case("t.png", lambda p: p.write_bytes(_noise_bytes("PNG")[:800])), "truncated", 2),
    "truncated jpeg": (_image_case("t.jpg", lambda p: p.write_bytes(_noise_bytes("JPEG")[:900])), "truncated", 2),
    "oversized": (_image_case("big.png", lambda p: write_image(p, size=(120, 100))), "over the limit of 10,000", 2),
    "unlisted image": (_unlisted, "stray.png: image not listed in metadata.jsonl", None),
    "no metadata": (lambda r: write_image(r / "good.png"), "no metadata.jsonl", None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_problem_is_reported_with_location(tmp_path: Path, case: str, capsys) -> None:
    setup, reason, line = CASES[case]
    root = tmp_path / "ds"
    root.mkdir()
    setup(root)
    rc = main(["data", "validate", str(root), "--max-pixels", "10000"])
    captured = capsys.readouterr()
    assert rc == 1
    problems = captured.out.strip().splitlines()
    relevant = [p for p in problems if reason in p]
    assert relevant, f"{reason!r} not in {captured.out!r}"
    if line is not None:
        assert relevant[0].startswith(f"{root / 'metadata.jsonl'}:{line}: ")
    assert "problem(s)" in problems[-1]
    assert "Traceback" not in captured.out + captured.err


def test_clean_dataset_passes(tmp_path: Path, capsys) -> None:
    write_image(tmp_path / "good.png")
    write_image(tmp_path / "sub" / "b.jpg", fmt="JPEG")
    rows = [GOOD, {"file_name": "sub/b.jpg", "text": ["x", "y"], "split": "test"}]
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", "validate", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"{tmp_path}: 2 rows, 2 valid (test 1, train 1); OK"


def test_all_problems_listed_not_just_the_first(tmp_path: Path) -> None:
    write_image(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"junk")
    rows = [GOOD, {"file_name": "bad.png", "text": "x"}, {"file_name": "good.png", "text": ""}, b"{oops"]
    (tmp_path / "metadata.jsonl").write_bytes(b"\n".join(_row(tmp_path, r) for r in rows))
    report = validate_dataset(tmp_path, check_unlisted=False)
    assert [(p.line, p.reason.split(" ")[0]) for p in report.problems] == [(2, "image"), (3, "empty"), (4, "invalid")]
    assert report.n_rows == 4 and report.n_ok == 1 and not report.ok


def test_caption_column_option(tmp_path: Path, capsys) -> None:
    write_image(tmp_path / "good.png")
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "good.png", "prompt": "castle"}) + "\n")
    assert main(["data", "validate", str(tmp_path), "--caption-column", "prompt"]) == 0
    assert main(["data", "validate", str(tmp_path)]) == 1
    assert "no row has the caption column 'text' (columns: file_name, prompt)" in capsys.readouterr().out


def test_wrong_caption_column_is_one_line_not_one_per_row(tmp_path: Path, capsys) -> None:
    rows = []
    for i in range(20):
        write_image(tmp_path / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "text": f"caption {i}", "split": "train"})
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", "validate", str(tmp_path), "--caption-column", "prompt"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2, lines  # the problem and the summary
    assert "'prompt'" in lines[0] and "columns: file_name, split, text" in lines[0] and "--caption-column" in lines[0]


def test_a_row_with_only_a_bad_split_does_not_make_its_image_unlisted(tmp_path: Path, capsys) -> None:
    write_image(tmp_path / "b.png")
    _write(tmp_path, {"file_name": "b.png", "text": "x", "split": "dev"})
    assert main(["data", "validate", str(tmp_path)]) == 1
    problems = capsys.readouterr().out.strip().splitlines()[:-1]
    assert len(problems) == 1 and "unknown split 'dev'" in problems[0], problems

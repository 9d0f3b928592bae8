"""Records: reading/writing metadata.jsonl, strict errors naming file:line, paths kept inside the folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from datafixtures import write_image

from vlgen.data import Record, load_records, write_dataset
from vlgen.errors import DataError


def make_dataset(root: Path, rows: list, images: tuple[str, ...] = ("a.png", "b.png")) -> Path:
    for name in images:
        write_image(root / name)
    lines = [r if isinstance(r, (str, bytes)) else json.dumps(r) for r in rows]
    data = b"\n".join(x if isinstance(x, bytes) else x.encode() for x in lines) + b"\n"
    (root / "metadata.jsonl").write_bytes(data)
    return root


def test_load_records_reads_strings_lists_splits_and_extra(tmp_path: Path) -> None:
    make_dataset(
        tmp_path,
        [
            {"file_name": "a.png", "text": "a red dot", "split": "train", "source": "x"},
            "",  # blank lines are allowed (and keep the line numbers of the rows after them)
            {"file_name": "b.png", "text": ["one", "two"], "split": "test", "source": "y"},
        ],
    )
    recs = load_records(tmp_path)
    assert [r.file_name for r in recs] == ["a.png", "b.png"]
    assert recs[0].captions == ["a red dot"] and recs[1].captions == ["one", "two"]
    assert recs[0].extra == {"source": "x"} and recs[1].split == "test"
    assert recs[1].path == tmp_path / "b.png" and recs[0].caption == "a red dot"
    assert [r.file_name for r in load_records(tmp_path, split="test")] == ["b.png"]
    with pytest.raises(DataError, match="no rows with split 'validation'"):
        load_records(tmp_path, split="validation")


def test_custom_caption_column(tmp_path: Path) -> None:
    make_dataset(tmp_path, [{"file_name": "a.png", "prompt": "castle", "text": ""}], images=("a.png",))
    assert load_records(tmp_path, caption_column="prompt")[0].captions == ["castle"]
    with pytest.raises(DataError, match="metadata.jsonl:1: empty caption in column 'text'"):
        load_records(tmp_path)


BAD_ROWS = {
    "malformed json": (b'{"file_name": "a.png", "text": ', "invalid JSON"),
    "not utf-8": (b'{"file_name": "a.png", "text": "caf\xe9"}', "not valid UTF-8"),
    "not an object": (b'["a.png", "text"]', "expected a JSON object, got list"),
    "no file_name": ({"text": "x"}, "missing 'file_name'"),
    "no caption": ({"file_name": "a.png"}, "missing caption column 'text'"),
    "empty caption": ({"file_name": "a.png", "text": "  "}, "empty caption"),
    "empty caption list": ({"file_name": "a.png", "text": []}, "empty list"),
    "non-text caption": ({"file_name": "a.png", "text": ["ok", 3]}, "holds int 3"),
    "unknown split": ({"file_name": "a.png", "text": "x", "split": "val"}, "unknown split 'val'"),
    "dot-dot": ({"file_name": "../a.png", "text": "x"}, "contains '..'"),
    "absolute": ({"file_name": "/etc/passwd", "text": "x"}, "absolute path"),
    "backslash": ({"file_name": "sub\\a.png", "text": "x"}, "backslash"),
    "file_name not text": ({"file_name": 7, "text": "x"}, "must be a string"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_raises_with_file_and_line(tmp_path: Path, case: str) -> None:
    row, reason = BAD_ROWS[case]
    make_dataset(tmp_path, [{"file_name": "b.png", "text": "fine"}, row])
    with pytest.raises(DataError) as e:
        load_records(tmp_path)
    assert e.value.line == 2 and e.value.path == str(tmp_path / "metadata.jsonl")
    assert str(e.value).startswith(f"{tmp_path / 'metadata.jsonl'}:2: ") and reason in str(e.value)


def test_duplicate_and_missing_metadata(tmp_path: Path) -> None:
    make_dataset(tmp_path, [{"file_name": "a.png", "text": "x"}, {"file_name": "a.png", "text": "y"}])
    with pytest.raises(DataError, match=r"metadata.jsonl:2: duplicate file_name 'a.png' \(first on line 1\)"):
        load_records(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no metadata.jsonl in the dataset folder"):
        load_records(tmp_path / "empty")


def test_symlink_pointing_outside_is_rejected(tmp_path: Path) -> None:
    outside = write_image(tmp_path / "secret.png")
    root = tmp_path / "ds"
    make_dataset(root, [{"file_name": "a.png", "text": "x"}, {"file_name": "link.png", "text": "y"}])
    os.symlink(outside, root / "link.png")
    with pytest.raises(DataError, match=r":2: file_name 'link.png' resolves to .*outside the dataset folder"):
        load_records(root)
    os.symlink(root / "a.png", root / "inside.png")  # a link that stays inside is fine
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": "inside.png", "text": "z"}) + "\n")
    assert load_records(root)[0].file_name == "inside.png"


def test_write_dataset_copies_images_and_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "src"
    recs = [
        Record("x/one.png", ["first", "second"], "train", write_image(src / "1.png"), {"k": 1}),
        Record("two.png", ["only"], "test", write_image(src / "2.png", (0, 0, 255)), {"k": 2}),
    ]
    meta = write_dataset(tmp_path / "out", recs)
    rows = [json.loads(line) for line in meta.read_text().splitlines()]
    # One caption type per column: lists for every row once any row has several references.
    assert rows[1] == {"file_name": "two.png", "text": ["only"], "split": "test", "k": 2}
    assert (tmp_path / "out" / "x" / "one.png").read_bytes() == (src / "1.png").read_bytes()
    back = load_records(tmp_path / "out")
    assert [(r.file_name, r.captions, r.split, r.extra) for r in back] == [
        (r.file_name, r.captions, r.split, r.extra) for r in recs
    ]
    single = write_dataset(tmp_path / "single", [Record("a.png", ["hi"], None, src / "1.png")])
    assert json.loads(single.read_text()) == {"file_name": "a.png", "text": "hi"}
    assert not list((tmp_path / "out").glob(".*.tmp"))  # no temp files left behind


@pytest.mark.parametrize(
    "records,reason",
    [
        ([Record("a.png", ["x"]), Record("a.png", ["y"])], "duplicate file_name 'a.png'"),
        ([Record("../a.png", ["x"])], "contains '..'"),
        ([Record("a.png", [""])], "empty caption"),
        ([Record("a.png", ["x"], split="dev")], "unknown split 'dev'"),
        ([Record("a.png", ["x"], path=Path("/nonexistent/a.png"))], "source image not found"),
    ],
)
def test_write_dataset_rejects_bad_records_before_writing(tmp_path: Path, records: list, reason: str) -> None:
    with pytest.raises(DataError, match=reason):
        write_dataset(tmp_path / "out", records)
    assert not (tmp_path / "out" / "metadata.jsonl").exists()

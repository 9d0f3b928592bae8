"""autocaption captions through `caption_images` (issue 16): the same bad-image rules as `vlgen caption`."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from vlgen.captioning.batch import caption_images
from vlgen.captioning.registry import load_captioner
from vlgen.errors import ImageLoadError
from vlgen.t2i.autocaption import autocaption


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "icons"
    d.mkdir()
    for i, name in enumerate(["a.png", "c.png", "d.png"]):
        Image.new("RGB", (20, 20), (i * 60, 0, 0)).save(d / name)
    (d / "b_bad.png").write_bytes(b"not an image at all")  # sorted between a and c
    return d


def _rows(meta):
    return [json.loads(line) for line in meta.read_text().splitlines()]


def test_a_bad_image_stops_autocaption_as_it_stops_caption_once_the_images_before_it_are_written(
    folder, tiny_cnn_lstm_dir
):
    kw = {"num_beams": 1, "max_new_tokens": 4, "batch_size": 8}  # one batch: the stop is per image, not per batch
    with pytest.raises(ImageLoadError) as auto:
        autocaption(folder, model=str(tiny_cnn_lstm_dir), template="TOK, {caption}", **kw)
    assert [r["file_name"] for r in _rows(folder / "metadata.jsonl")] == ["a.png"]  # written, c and d not reached
    items = [(n, folder / n) for n in ["a.png", "b_bad.png", "c.png", "d.png"]]
    echoed = []
    with pytest.raises(ImageLoadError) as plain:
        caption_images(load_captioner(tiny_cnn_lstm_dir), items, None, echo=echoed.append, **kw)
    assert [r["file_name"] for r in echoed] == ["a.png"]
    assert str(auto.value) == str(plain.value)  # one message, naming the file and the way on
    assert "b_bad.png" in str(auto.value) and "--on-error skip" in str(auto.value)

    res = autocaption(folder, model=str(tiny_cnn_lstm_dir), template="TOK, {caption}", on_error="skip", **kw)
    assert res.captioned == ["c.png", "d.png"] and res.kept == ["a.png"]
    assert [n for n, _ in res.failed] == ["b_bad.png"] and res.failed[0][1]
    rows = _rows(folder / "metadata.jsonl")
    assert [r["file_name"] for r in rows] == ["a.png", "c.png", "d.png"]  # the unreadable image gets no row
    assert all(r["text"].startswith("TOK, ") and r["caption_model"] == str(tiny_cnn_lstm_dir) for r in rows)

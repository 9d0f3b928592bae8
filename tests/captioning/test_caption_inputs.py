"""The captioning input pipeline (issue 19 item 3): worker processes give the same output as decoding in the
caller; JPEG draft mode only from twice the model input on both sides; the server decodes through the same
function as `vlgen caption`."""

from __future__ import annotations

import asyncio
import io
import json
import math
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from vlgen.captioning import inputs
from vlgen.captioning.batch import caption_images, collect_inputs
from vlgen.captioning.registry import load_captioner
from vlgen.data import images
from vlgen.data.images import decode_image, jpeg_draft_scale
from vlgen.errors import ImageLoadError


def _jpeg(w: int, h: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8))
    buf = io.BytesIO()
    small.resize((w, h), Image.Resampling.BICUBIC).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("size", "input_size", "scale"),
    [
        ((767, 767), (384, 384), 1),  # under 2x on both sides
        ((768, 767), (384, 384), 1),  # 2x on one side only
        ((767, 768), (384, 384), 1),
        ((768, 768), (384, 384), 2),  # exactly 2x: half size is the input
        ((1600, 1200), (384, 384), 2),  # 1/4 would leave 300 < 384 rows
        ((4000, 3000), (384, 384), 4),
        ((20000, 20000), (384, 384), 8),  # libjpeg's smallest scale
        ((640, 480), (224, 224), 2),
        ((640, 480), (384, 384), 1),
        ((600, 1300), (300, 200), 2),  # (width, height) each against its own side
    ],
)
def test_draft_scale_only_from_twice_the_input(size, input_size, scale) -> None:
    assert jpeg_draft_scale(size, input_size) == scale
    s = jpeg_draft_scale(size, input_size)
    assert size[0] / s >= input_size[0] and size[1] / s >= input_size[1]  # never below the input


@pytest.mark.parametrize(
    ("size", "input_size", "decoded"),
    [
        ((760, 760), (384, 384), (760, 760)),  # under 2x: full decode, no reduction
        ((768, 768), (384, 384), (384, 384)),  # 2x: drafted to half
        ((1600, 1200), (384, 384), (800, 600)),
        ((1024, 768), (100, 100), (256, 192)),  # 768 // 100 = 7: 1/4, not 1/8
        ((1203, 803), (100, 100), (150, 100)),  # not a multiple of 8: the partial block is mapped out
    ],
)
def test_jpeg_decodes_at_the_draft_scale_only_above_the_threshold(monkeypatch, size, input_size, decoded) -> None:
    calls = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, requested):
        calls.append(requested)
        return draft(self, mode, requested)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    data = _jpeg(*size)
    im = decode_image(data, "x.jpg", input_size=input_size)
    assert im.mode == "RGB" and im.size == decoded
    assert bool(calls) == (jpeg_draft_scale(size, input_size) > 1)  # draft mode asked for only above 2x
    # what libjpeg gives at that scale: ceil(side / scale)
    s = jpeg_draft_scale(size, input_size)
    assert math.isclose(im.width, size[0] / s, abs_tol=1) and math.isclose(im.height, size[1] / s, abs_tol=1)
    assert decode_image(data, "x.jpg").size == size  # no input size: the image as it is


def test_png_is_never_drafted(monkeypatch) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (1600, 1200), (10, 20, 30)).save(buf, format="PNG")
    assert decode_image(buf.getvalue(), input_size=(384, 384)).size == (1600, 1200)  # < 6x: left alone


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Seven images of mixed formats and sizes (two above the tiny models' 2x draft threshold) and one bad file."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)).save(root / f"img{i}.png")
    (root / "big0.jpg").write_bytes(_jpeg(256, 192, seed=1))
    (root / "big1.jpg").write_bytes(_jpeg(333, 250, seed=2))
    (root / "img2b.jpg").write_bytes(b"not an image")  # sorts between img2.png and img3.png
    return root


def _run(captioner, folder: Path, out: Path, workers: int, on_error: str = "skip"):
    items = collect_inputs([folder])
    summary = caption_images(
        captioner, items, out, batch_size=2, num_beams=2, max_new_tokens=5, on_error=on_error, num_workers=workers
    )
    return summary, out.read_text(), out.with_suffix(".skipped.jsonl")


@pytest.mark.parametrize("family", ["blip", "vit-gpt2"])
def test_workers_give_the_output_of_decoding_in_the_caller(request, family, folder, tmp_path) -> None:
    captioner = load_captioner(request.getfixturevalue(f"tiny_{family.replace('-', '_')}_dir"))
    s0, rows0, skip0 = _run(captioner, folder, tmp_path / "w0.jsonl", 0)
    s2, rows2, skip2 = _run(captioner, folder, tmp_path / "w2.jsonl", 2)
    assert rows2 == rows0  # same captions, same order
    assert [json.loads(r)["file_name"] for r in rows0.splitlines()] == [
        "big0.jpg", "big1.jpg", "img0.png", "img1.png", "img2.png", "img3.png", "img4.png",
    ]  # fmt: skip
    assert s2.skipped == s0.skipped == [{"file_name": "img2b.jpg", "reason": s0.skipped[0]["reason"]}]
    assert skip2.read_text() == skip0.read_text().replace("w0", "w2")
    # A rerun on the same output with workers skips everything already there, as before.
    again, rows, _ = _run(captioner, folder, tmp_path / "w2.jsonl", 2)
    assert again.captioned == 0 and again.already_done == 7 and rows == rows2


def test_fail_mode_with_workers_captions_the_images_before_the_bad_one(tiny_blip_dir, folder, tmp_path) -> None:
    captioner = load_captioner(tiny_blip_dir)
    errors, outputs = [], []
    for workers in (0, 2):
        out = tmp_path / f"f{workers}.jsonl"
        with pytest.raises(ImageLoadError) as e:
            _run(captioner, folder, out, workers, on_error="fail")
        errors.append(str(e.value))
        outputs.append(out.read_text())
    assert errors[0] == errors[1] and "img2b.jpg" in errors[0]
    assert outputs[0] == outputs[1]
    # batches of 2: [big0, big1] [img0, img1] [img2, img2b]: img2 is captioned, nothing after the bad file
    assert [json.loads(r)["file_name"] for r in outputs[1].splitlines()][-1] == "img2.png"


def test_workers_run_the_processor(tiny_blip_dir, folder) -> None:
    """The workers hand the model pixel_values made by the captioner's own processor."""
    captioner = load_captioner(tiny_blip_dir)
    items = collect_inputs([folder])[:2]
    batches = list(
        inputs.decoded_batches(
            [items[:1], items[1:]],
            input_size=captioner.input_size,
            transform=captioner.image_transform(),
            num_workers=2,
        )
    )
    for batch, (_, path) in zip(batches, items, strict=True):
        im = decode_image(path, input_size=captioner.input_size)
        expected = captioner.processor(images=[im], return_tensors="pt").pixel_values
        assert batch.inputs.shape == expected.shape and bool((batch.inputs == expected).all())


class _SizeCaptioner:
    """The server's captioner stand-in: its input size, and captions saying what size it was given."""

    family = "fake"
    input_size = (32, 32)

    def generate(self, images, num_beams=1, max_new_tokens=30):
        return [f"{im.width}x{im.height}" for im in images]


def test_server_decodes_through_the_same_function(monkeypatch, tmp_path) -> None:
    from vlgen.serving.app import create_app
    from vlgen.serving.settings import ServeSettings

    seen = []
    real = images.decode_image

    def spy(*args, **kwargs):
        seen.append(kwargs.get("input_size"))
        return real(*args, **kwargs)

    monkeypatch.setattr(images, "decode_image", spy)
    data = _jpeg(256, 192)
    app = create_app(ServeSettings(max_wait_ms=0), captioner=_SizeCaptioner())

    async def go():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
                return await client.post("/v1/caption", files=[("files", ("a.jpg", data, "image/jpeg"))])

    response = asyncio.run(go())
    assert response.status_code == 200, response.text
    assert seen == [(32, 32)]
    assert inputs.decode_image is real  # `vlgen caption`'s workers call the very same function
    (tmp_path / "a.jpg").write_bytes(data)
    cli_image = inputs.decode_item(tmp_path / "a.jpg", (32, 32))  # what they decode from the file
    assert cli_image.size == (64, 48)  # drafted to 1/4
    assert json.dumps(response.json()).count(f"{cli_image.width}x{cli_image.height}") == 1

"""The vision-language captioner family on tiny Florence-2 (encoder-decoder, task tokens) and Qwen2-VL (decoder-only,
chat template, a different number of image tokens per image shape): captions equal plain transformers', batched
captions equal one-at-a-time ones, the truncated flag, the prompt option, remote-code refusal, and the CLI, API and
server paths."""

from __future__ import annotations

import asyncio
import io
import json

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from vlgen.captioning.registry import caption, caption_folder, family_of, load_captioner
from vlgen.captioning.vlm import VisionLanguageCaptioner
from vlgen.cli import main
from vlgen.errors import ConfigError, ModelNotAvailableError
from vlgen.testing import build_tiny, file_digests

SIZES = [(40, 30), (80, 64), (64, 64), (120, 50), (30, 90)]  # Qwen2-VL: 1 to 16 image tokens -> padded batches


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in SIZES]


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory, images):
    folder = tmp_path_factory.mktemp("vlm_images")
    for i, im in enumerate(images):
        im.save(folder / f"im{i}.png")
    return folder


@pytest.fixture(scope="module")
def florence(florence_dir):
    return load_captioner(florence_dir)


@pytest.fixture(scope="module")
def qwen(qwen_dir):
    return load_captioner(qwen_dir)


def _plain(model_dir, image, text, max_new_tokens, num_beams=1):
    """Plain transformers, one image: AutoProcessor + AutoModelForImageTextToText.generate, new tokens decoded."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    inputs = processor(images=[image], text=[text], return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**inputs, max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False)
    start = 1 if model.config.is_encoder_decoder else inputs["input_ids"].shape[1]
    return " ".join(processor.batch_decode(ids[:, start:], skip_special_tokens=True)[0].split())


def test_families_and_defaults(florence, qwen, florence_dir, qwen_dir):
    assert family_of(florence_dir) == family_of(qwen_dir) == "vlm"
    assert isinstance(florence, VisionLanguageCaptioner) and isinstance(qwen, VisionLanguageCaptioner)
    assert florence.prompt == "<CAPTION>" and not florence.chat_template
    assert qwen.prompt == "Describe this image in one sentence." and qwen.chat_template
    assert qwen.tokenizer.padding_side == "left"  # decoder-only
    # the chat template wraps the prompt: a user turn with the image, then the assistant turn opened
    text = qwen._text(qwen.prompt)
    assert "<|vision_start|><|image_pad|><|vision_end|>Describe this image in one sentence.<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("which", ["florence", "qwen"])
def test_captions_equal_plain_transformers_one_image_at_a_time(which, request, images):
    captioner = request.getfixturevalue(which)
    model_dir = request.getfixturevalue(f"{which}_dir")
    ours = captioner.generate(images[:2], max_new_tokens=6)
    for image, got in zip(images[:2], ours, strict=True):
        assert got == _plain(model_dir, image, captioner._text(captioner.prompt), 6)
    assert all(ours)  # the prompt is cut: a decoder-only model's output starts after it
    assert "Describe" not in " ".join(ours) and "assistant" not in " ".join(ours)


@pytest.mark.parametrize("which", ["florence", "qwen"])
@pytest.mark.parametrize("num_beams", [1, 2])
def test_batched_captions_equal_one_at_a_time(which, num_beams, request, images):
    captioner = request.getfixturevalue(which)
    batched = captioner.caption_rows(images, num_beams=num_beams, max_new_tokens=8)
    alone = [captioner.caption_rows([im], num_beams=num_beams, max_new_tokens=8)[0] for im in images]
    assert batched == alone
    assert len({r["caption"] for r in batched}) > 1  # the captions depend on the image: the test can fail


def test_qwen_batch_is_left_padded(qwen, images):
    inputs = qwen._inputs(images[:2], qwen.prompt)
    mask = inputs["attention_mask"]
    assert (mask[:, -1] == 1).all() and (mask == 0).any()  # different image token counts, padded on the left


@pytest.mark.parametrize("which", ["florence", "qwen"])
def test_truncated_flag(which, request, images):
    captioner = request.getfixturevalue(which)
    rows = captioner.caption_rows(images[:2], max_new_tokens=5)
    assert all(r.get("truncated") is True for r in rows)  # random weights never end a caption within 5 tokens
    # Make a token the first row generates its end: that row ends early and is not cut.
    inputs = captioner._inputs(images[:1], captioner.prompt)
    with torch.no_grad():
        ids = captioner.model.generate(**inputs, max_new_tokens=5, do_sample=False)
    new = ids[0, 1:] if captioner.is_encoder_decoder else ids[0, inputs["input_ids"].shape[1] :]
    stop = int(new[1])
    ended = captioner.caption_rows(images[:1], max_new_tokens=5, eos_token_id=stop)
    assert "truncated" not in ended[0]


def test_prompt_option(florence, qwen, images):
    assert qwen.generate(images[:1], max_new_tokens=6, prompt="What colour is it?") != qwen.generate(
        images[:1], max_new_tokens=6
    )
    detailed = florence.generate(images[:2], max_new_tokens=6, prompt="<DETAILED_CAPTION>")
    assert detailed != florence.generate(images[:2], max_new_tokens=6)
    with pytest.raises(ConfigError, match="must be the whole prompt"):
        florence.generate(images[:1], prompt="<CAPTION> of a cat")


def test_prompt_is_refused_by_families_without_one(tiny_blip_dir):
    with pytest.raises(ConfigError, match="--caption-prompt.*takes no prompt"):
        load_captioner(tiny_blip_dir, prompt="Describe it.")
    with pytest.raises(ConfigError, match="--dtype 'fp8'"):
        load_captioner(tiny_blip_dir, dtype="fp8")


def test_remote_code_florence_is_refused_in_one_line(tmp_path, image_dir, capsys):
    for ref in ("microsoft/Florence-2-base", "microsoft/Florence-2-large-ft"):
        with pytest.raises(ModelNotAvailableError) as info:
            family_of(ref)
        size = "large" if "large" in ref else "base"
        assert f"florence-community/Florence-2-{size}" in str(info.value) and "remote code" in str(info.value)
    assert main(["caption", str(image_dir), "--model", "microsoft/Florence-2-base"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "florence-community/Florence-2-base" in err
    # the same checkpoint copied to a directory: model_type florence2 with auto_map and a DaViT vision config
    copy = tmp_path / "florence-remote"
    copy.mkdir()
    config = {"model_type": "florence2", "auto_map": {"AutoConfig": "configuration_florence2.Florence2Config"}}
    (copy / "config.json").write_text(json.dumps({**config, "vision_config": {"model_type": "davit"}}))
    with pytest.raises(ModelNotAvailableError, match="florence-community/Florence-2-base"):
        family_of(copy)


def test_cli_caption_resumes_with_prompt_and_truncated_rows(qwen_dir, qwen, image_dir, images, tmp_path):
    out = tmp_path / "captions.jsonl"
    args = ["caption", str(image_dir), "--model", str(qwen_dir), "--out", str(out), "--num-beams", "1"]
    args += ["--max-new-tokens", "5", "--caption-prompt", "What is shown?", "--batch-size", "2", "--dtype", "fp32"]
    assert main([*args, "--num-workers", "0"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["file_name"] for r in rows] == [f"im{i}.png" for i in range(len(images))]
    expected = qwen.caption_rows(images, max_new_tokens=5, prompt="What is shown?")
    assert [{k: v for k, v in r.items() if k != "file_name"} for r in rows] == expected
    assert any(r.get("truncated") is True for r in rows)  # 4 of the 5 are cut at 5 tokens
    # resumable as today: rows already there are not redone
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:2]) + "\n")
    assert main([*args, "--num-workers", "0"]) == 0
    assert out.read_text().splitlines() == lines


def test_cli_refuses_prompt_for_blip_before_loading(tiny_blip_dir, image_dir, capsys):
    assert main(["caption", str(image_dir), "--model", str(tiny_blip_dir), "--caption-prompt", "Describe."]) == 1
    assert "takes no prompt" in capsys.readouterr().err


def test_api_caption_and_caption_folder(florence_dir, florence, image_dir, images, tmp_path):
    paths = sorted(image_dir.glob("*.png"))
    got = caption(paths, model=florence_dir, max_new_tokens=6, caption_prompt="<DETAILED_CAPTION>", device="cpu")
    assert got == florence.generate(images, max_new_tokens=6, prompt="<DETAILED_CAPTION>")
    out = tmp_path / "c.jsonl"
    summary = caption_folder(image_dir, out, model=florence, max_new_tokens=4, batch_size=3)
    assert summary.captioned == len(images) and summary.truncated == len(images)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["caption"] for r in rows] == florence.generate(images, max_new_tokens=4)


def test_autocaption_records_prompt_and_truncation(qwen_dir, images, tmp_path):
    from vlgen.t2i.autocaption import autocaption

    for i, im in enumerate(images[:2]):
        im.save(tmp_path / f"im{i}.png")
    res = autocaption(tmp_path, model=str(qwen_dir), num_beams=1, max_new_tokens=4, caption_prompt="Describe it.")
    rows = [json.loads(line) for line in (tmp_path / "metadata.jsonl").read_text().splitlines()]
    assert len(res.captioned) == 2 and res.truncated == ["im0.png", "im1.png"]
    assert all(r["caption_prompt"] == "Describe it." and r["truncated"] is True for r in rows)


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_serve_caption_prompt_form_field(qwen_dir, qwen, images):
    from vlgen.serving.app import create_app
    from vlgen.serving.settings import ServeSettings

    settings = ServeSettings(caption_model=str(qwen_dir), device="cpu", max_new_tokens=5, num_beams=1)
    app = create_app(settings)

    async def go():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
                files = [("files", (f"{i}.png", _png(im), "image/png")) for i, im in enumerate(images[:2])]
                asked = await client.post("/v1/caption", files=files, data={"caption_prompt": "What is it?"})
                default = await client.post("/v1/caption", files=files)
                models = await client.get("/v1/models")
                return asked, default, models

    asked, default, models = asyncio.run(go())
    assert asked.status_code == 200, asked.text
    body = asked.json()
    assert body["caption_prompt"] == "What is it?"
    expected = qwen.caption_rows(images[:2], max_new_tokens=5, prompt="What is it?")
    assert [{k: v for k, v in c.items() if k in ("caption", "truncated")} for c in body["captions"]] == expected
    assert default.json()["caption_prompt"] == qwen.prompt
    assert [c["caption"] for c in default.json()["captions"]] == qwen.generate(images[:2], max_new_tokens=5)
    assert models.json()["data"][0]["defaults"]["caption_prompt"] == qwen.prompt


def test_serve_refuses_caption_prompt_for_a_model_without_one(images):
    from vlgen.serving.app import create_app
    from vlgen.serving.settings import ServeSettings

    class Fake:
        family = "blip"

        def generate(self, images, num_beams=1, max_new_tokens=30):
            return ["x"] * len(images)

    app = create_app(ServeSettings(), captioner=Fake())

    async def go():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                files = {"file": ("a.png", _png(images[0]), "image/png")}
                return await client.post("/v1/caption", files=files, data={"caption_prompt": "Describe."})

    r = asyncio.run(go())
    assert r.status_code == 422 and r.json()["error"]["param"] == "caption_prompt"


@pytest.mark.parametrize("name", ["florence-2", "qwen2-vl"])
def test_tiny_builds_are_seeded_and_load_with_from_pretrained(name, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    a = build_tiny(name, tmp_path / "a", seed=0)
    assert file_digests(build_tiny(name, tmp_path / "b", seed=0)) == file_digests(a)
    assert (
        file_digests(build_tiny(name, tmp_path / "c", seed=1))["model.safetensors"]
        != file_digests(a)["model.safetensors"]
    )
    processor = AutoProcessor.from_pretrained(a)
    model = AutoModelForImageTextToText.from_pretrained(a)
    assert type(model).__name__ == {"florence-2": "Florence2ForConditionalGeneration"}.get(
        name, "Qwen2VLForConditionalGeneration"
    )
    assert type(processor).__name__ == {"florence-2": "Florence2Processor"}.get(name, "Qwen2VLProcessor")


def test_roundtrip_caption_prompt_goes_to_the_captioners_that_take_one(
    qwen_dir, qwen, tiny_blip_dir, image_dir, images, tmp_path
):
    from vlgen.roundtrip.config import RoundtripConfig
    from vlgen.roundtrip.run import _check_captioners, caption_all

    with pytest.raises(ConfigError, match="--caption-prompt: none of the captioners"):
        _check_captioners(RoundtripConfig(captioners=[str(tiny_blip_dir)], caption_prompt="What is it?"))
    cfg = RoundtripConfig(
        captioners=[str(tiny_blip_dir), str(qwen_dir)], caption_prompt="What is it?", num_beams=1, max_new_tokens=5
    )
    assert _check_captioners(cfg) == {str(tiny_blip_dir): "blip", str(qwen_dir): "vlm"}
    items = [(p.name, p) for p in sorted(image_dir.glob("*.png"))]
    captions, made = caption_all(items, tmp_path, cfg, "cpu")
    assert made == 2 * len(images)
    assert list(captions[1].values()) == qwen.generate(images, max_new_tokens=5, prompt="What is it?")

"""Properties of the image metrics that hold for any weights, checked on tiny random CLIP / DINO / VGG."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vlgen.metrics.image import (
    IMAGE_METRIC_KEYS,
    clip_image_embeddings,
    clip_t_scores,
    clip_text_embeddings,
    compute_image_metrics,
    dino_embeddings,
    gram_distances,
    load_clip,
    load_dino,
    load_vgg,
)
from vlgen.testing.vgg import build_tiny_vgg

PROMPTS = ["a red circle on a white background", "a brown dog on the grass", "two cats sleeping on a sofa",
           "a blue square", "a man riding a wave on a surfboard"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_vgg_dir(tmp_path_factory):
    return build_tiny_vgg(tmp_path_factory.mktemp("tiny") / "vgg", seed=0)


@pytest.fixture(scope="module")
def images():
    """Five different images of different sizes and aspect ratios (noise, gradients, flat colour)."""
    rng = np.random.default_rng(0)
    ims = [Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 48 - 4 * i, 3), dtype=np.uint8)) for i in range(3)]
    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    ims.append(Image.fromarray(np.stack([np.tile(ramp, (50, 1))] * 3, axis=-1)))
    ims.append(Image.new("RGB", (36, 36), (200, 30, 60)))
    return ims


@pytest.fixture(scope="module")
def models(tiny_clip_dir, tiny_dino_dir, tiny_vgg_dir):
    return {
        "clip_model": str(tiny_clip_dir),
        "dino_model": str(tiny_dino_dir),
        "vgg_weights": str(tiny_vgg_dir),
        "gram_image_size": 32,
        "metrics": "CLIP-T,CLIP-I,DINO,Gram",
    }


def test_an_image_against_itself_gives_clip_i_dino_one_and_gram_zero(images, models):
    for im in images[:3]:
        s = compute_image_metrics([im], None, [im], **{**models, "metrics": "CLIP-I,DINO,Gram"})
        assert s.corpus["CLIP-I"] == pytest.approx(1.0, abs=1e-6)
        assert s.corpus["DINO"] == pytest.approx(1.0, abs=1e-6)
        assert s.corpus["Gram"] == pytest.approx(0.0, abs=1e-12)


def test_results_do_not_depend_on_file_order(images, models):
    gen, refs = images[:3], images[3:]
    a = compute_image_metrics(gen, PROMPTS[:3], refs, **models)
    order = [2, 0, 1]
    b = compute_image_metrics([gen[i] for i in order], [PROMPTS[i] for i in order], refs[::-1], **models)
    for k in ("CLIP-T", "CLIP-I", "DINO", "Gram"):
        assert b.corpus[k] == pytest.approx(a.corpus[k], rel=1e-6, abs=1e-12), k
        for j, i in enumerate(order):  # the per-image score travels with its image
            assert b.per_image[j][k] == pytest.approx(a.per_image[i][k], rel=1e-6, abs=1e-12), k


def test_clip_t_is_never_negative_and_matches_a_direct_computation(images, tiny_clip_dir):
    from transformers import CLIPModel, CLIPProcessor

    s = compute_image_metrics(images, PROMPTS, None, clip_model=str(tiny_clip_dir), metrics="CLIP-T")
    per = [row["CLIP-T"] for row in s.per_image]
    assert all(v >= 0 for v in per)
    model = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    proc = CLIPProcessor.from_pretrained(tiny_clip_dir)
    with torch.no_grad():
        inputs = proc(text=PROMPTS, images=images, return_tensors="pt", padding=True)
        out = model(**inputs)  # CLIPModel's own forward: normalised image_embeds / text_embeds
    cos = (out.image_embeds * out.text_embeds).sum(-1).double()
    expected = 100 * torch.clamp(cos, min=0)
    torch.testing.assert_close(torch.tensor(per, dtype=torch.float64), expected, rtol=1e-5, atol=1e-4)
    assert s.corpus["CLIP-T"] == pytest.approx(float(expected.mean()), rel=1e-5, abs=1e-4)
    assert (cos < 0).any() and (cos > 0).any(), "fixture should exercise the clamp on both sides"


def test_clip_t_per_image_clamp_not_only_the_mean():
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    txt = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # cos = +1 and -1
    torch.testing.assert_close(clip_t_scores(img, txt), torch.tensor([100.0, 0.0], dtype=torch.float64))


def test_long_prompts_are_truncated_to_77_tokens_and_counted(tiny_clip_dir):
    clip = load_clip(str(tiny_clip_dir))
    long = " ".join(["a dog on the grass"] * 40)
    emb, truncated = clip_text_embeddings(clip, [long, "a dog"])
    assert truncated == 1 and emb.shape[0] == 2 and torch.isfinite(emb).all()


def test_batched_and_one_by_one_agree(images, tiny_clip_dir, tiny_dino_dir, tiny_vgg_dir):
    clip, dino = load_clip(str(tiny_clip_dir)), load_dino(str(tiny_dino_dir))
    vgg = load_vgg(tiny_vgg_dir, image_size=32)
    torch.testing.assert_close(
        clip_image_embeddings(clip, images, batch_size=1), clip_image_embeddings(clip, images, batch_size=4),
        rtol=1e-4, atol=1e-5,
    )  # fmt: skip
    torch.testing.assert_close(
        clip_text_embeddings(clip, PROMPTS, batch_size=1)[0], clip_text_embeddings(clip, PROMPTS, batch_size=3)[0],
        rtol=1e-4, atol=1e-5,
    )  # fmt: skip
    torch.testing.assert_close(
        dino_embeddings(dino, images, batch_size=1), dino_embeddings(dino, images, batch_size=5), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(
        gram_distances(vgg, images[:3], images[3:], batch_size=1),
        gram_distances(vgg, images[:3], images[3:], batch_size=3),
        rtol=1e-4, atol=1e-12,
    )  # fmt: skip


def test_every_key_is_present_and_missing_inputs_give_reasons(images, models):
    s = compute_image_metrics(images[:2], None, None, **{**models, "metrics": None})
    obj = s.to_json()
    assert list(obj) == [*IMAGE_METRIC_KEYS, "n_generated", "n_references", "settings"]
    assert all(obj[k] is None for k in IMAGE_METRIC_KEYS)
    why = obj["settings"]["unavailable"]
    assert "prompts" in why["CLIP-T"] and all("--references" in why[k] for k in IMAGE_METRIC_KEYS[1:])
    assert obj["n_generated"] == 2 and obj["n_references"] == 0


def test_default_models_unavailable_offline_give_null_with_the_resolvers_reason(images, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr("torch.hub.get_dir", lambda: str(tmp_path / "empty-torch-hub"))
    s = compute_image_metrics(images[:2], PROMPTS[:2], images[2:], gram_image_size=32)
    why = s.settings["unavailable"]
    assert s.corpus["CLIP-T"] is None and "openai/clip-vit-large-patch14" in why["CLIP-T"]
    assert s.corpus["DINO"] is None and "facebook/dino-vits16" in why["DINO"]
    assert s.corpus["Gram"] is None and "HF_HUB_OFFLINE" in why["Gram"]
    assert s.corpus["FID"] is None and "2048" in why["FID"]
    assert s.corpus["KID"] is None and why["KID"]


def test_an_explicit_model_that_fails_to_load_is_an_error(images, tmp_path):
    from vlgen.errors import ModelNotAvailableError

    with pytest.raises(ModelNotAvailableError, match="no-such-clip"):
        compute_image_metrics(images[:1], PROMPTS[:1], None, clip_model=str(tmp_path / "no-such-clip"))

"""Each image metric against a plain reference implementation of its formula on the same embeddings/features."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image

from vlgen.errors import ConfigError
from vlgen.metrics.image import (
    FidRefused,
    check_fid_sizes,
    clip_image_embeddings,
    compute_image_metrics,
    dino_embeddings,
    frechet_distance,
    gram_distance_matrix,
    gram_matrix,
    kernel_inception_distance,
    load_clip,
    load_dino,
    load_vgg,
    mean_pairwise_cosine,
)
from vlgen.metrics.image.fid import mmd2_unbiased
from vlgen.metrics.image.gram import gram_matrices as image_grams
from vlgen.metrics.image.gram import vgg_layer_names, vgg_pixel_values
from vlgen.testing.vgg import build_tiny_vgg


@pytest.fixture(scope="module")
def tiny_vgg_dir(tmp_path_factory):
    return build_tiny_vgg(tmp_path_factory.mktemp("tiny") / "vgg", seed=0)


@pytest.fixture(scope="module")
def gen_ref():
    rng = np.random.default_rng(1)
    ims = [Image.fromarray(rng.integers(0, 256, (32 + 4 * i, 40, 3), dtype=np.uint8)) for i in range(5)]
    return ims[:3], ims[3:]


def _naive_mean_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    rows = []
    for i in range(len(a)):
        rows.append(
            sum(float(F.cosine_similarity(a[i].double(), b[j].double(), dim=0)) for j in range(len(b))) / len(b)
        )
    return torch.tensor(rows, dtype=torch.float64)


def test_mean_pairwise_cosine_is_the_double_loop():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 7, generator=g), torch.randn(3, 7, generator=g)
    torch.testing.assert_close(mean_pairwise_cosine(a, b), _naive_mean_cosine(a, b))


def test_clip_i_and_dino_are_mean_cosines_over_all_pairs(gen_ref, tiny_clip_dir, tiny_dino_dir):
    gen, ref = gen_ref
    s = compute_image_metrics(gen, None, ref, clip_model=str(tiny_clip_dir), dino_model=str(tiny_dino_dir),
                              metrics="CLIP-I,DINO")  # fmt: skip
    clip, dino = load_clip(str(tiny_clip_dir)), load_dino(str(tiny_dino_dir))
    clip_ref = _naive_mean_cosine(clip_image_embeddings(clip, gen), clip_image_embeddings(clip, ref))
    dino_ref = _naive_mean_cosine(dino_embeddings(dino, gen), dino_embeddings(dino, ref))
    torch.testing.assert_close(torch.tensor([r["CLIP-I"] for r in s.per_image], dtype=torch.float64), clip_ref)
    torch.testing.assert_close(torch.tensor([r["DINO"] for r in s.per_image], dtype=torch.float64), dino_ref)
    # the corpus value is the mean over all 3 x 2 pairs
    assert s.corpus["CLIP-I"] == pytest.approx(float(clip_ref.mean()), rel=1e-9)
    assert s.corpus["DINO"] == pytest.approx(float(dino_ref.mean()), rel=1e-9)


def test_dino_embedding_is_the_cls_token_of_the_last_layer(gen_ref, tiny_dino_dir):
    from transformers import ViTImageProcessor, ViTModel

    model = ViTModel.from_pretrained(tiny_dino_dir, add_pooling_layer=False).eval()
    pixel_values = ViTImageProcessor.from_pretrained(tiny_dino_dir)(images=gen_ref[0], return_tensors="pt")[
        "pixel_values"
    ]
    with torch.no_grad():
        cls = model(pixel_values=pixel_values).last_hidden_state[:, 0]
    torch.testing.assert_close(dino_embeddings(load_dino(str(tiny_dino_dir)), gen_ref[0]), cls)


def test_gram_matrix_is_the_explicit_sum():
    feats = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    b, c, h, w = feats.shape
    expected = torch.zeros(b, c, c, dtype=torch.float64)
    for n in range(b):
        for i in range(c):
            for j in range(c):
                expected[n, i, j] = sum(
                    float(feats[n, i, y, x]) * float(feats[n, j, y, x]) for y in range(h) for x in range(w)
                )
    torch.testing.assert_close(gram_matrix(feats), expected / (c * h * w))
    torch.testing.assert_close(
        gram_matrix(feats), torch.einsum("bchw,bdhw->bcd", feats.double(), feats.double()) / (c * h * w)
    )


def test_gram_distance_is_mean_over_layers_of_mse(gen_ref, tiny_vgg_dir):
    gen, ref = gen_ref
    s = compute_image_metrics(gen, None, ref, vgg_weights=str(tiny_vgg_dir), gram_image_size=32, metrics="Gram")
    # Reference: run the VGG stack by hand, take Gatys's relu{b}_1 outputs, einsum Grams, explicit MSE.
    vgg = load_vgg(tiny_vgg_dir, image_size=32)
    names = vgg_layer_names(vgg.features)
    assert vgg.layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

    def grams(images):
        x = vgg_pixel_values(images, 32)
        out = []
        with torch.no_grad():
            for name, module in zip(names, vgg.features, strict=False):
                x = module(x)
                if name in vgg.layers:
                    _, c, h, w = x.shape
                    out.append(torch.einsum("bchw,bdhw->bcd", x.double(), x.double()) / (c * h * w))
        return out

    ga, gb = grams(gen), grams(ref)
    expected = torch.zeros(len(gen), dtype=torch.float64)
    for i in range(len(gen)):
        for j in range(len(ref)):
            expected[i] += sum(float(((a[i] - b[j]) ** 2).mean()) for a, b in zip(ga, gb, strict=True)) / len(ga)
    expected /= len(ref)
    torch.testing.assert_close(torch.tensor([r["Gram"] for r in s.per_image], dtype=torch.float64), expected,
                               rtol=1e-5, atol=1e-15)  # fmt: skip
    assert s.corpus["Gram"] == pytest.approx(float(expected.mean()), rel=1e-5)
    assert (expected > 0).all()


def test_gram_distance_matrix_shapes_and_symmetry():
    g = torch.Generator().manual_seed(0)
    a = [torch.randn(3, 4, 4, generator=g), torch.randn(3, 2, 2, generator=g)]
    d = gram_distance_matrix(a, a)
    assert d.shape == (3, 3)
    torch.testing.assert_close(d, d.T)
    torch.testing.assert_close(torch.diagonal(d), torch.zeros(3, dtype=torch.float64))


def test_vgg19_layer_names_match_caffe_numbering():
    from torchvision.models import vgg19

    with torch.device("meta"):  # structure only: no 548 MB of random init
        names = vgg_layer_names(vgg19(weights=None).features)
    # torchvision indices of Gatys's style layers in vgg19.features
    assert [names.index(n) for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")] == [1, 6, 11, 20, 29]
    assert names[34:37] == ["conv5_4", "relu5_4", "pool5"] and len(names) == 37


def test_unknown_gram_layer_is_a_config_error(tiny_vgg_dir):
    with pytest.raises(ConfigError, match="relu9_9"):
        load_vgg(tiny_vgg_dir, layers=("relu1_1", "relu9_9"))


def test_fid_matches_scipy_sqrtm_reference():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 8))
    b = rng.normal(loc=0.3, scale=1.5, size=(150, 8))
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    assert frechet_distance(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(torch.from_numpy(a), torch.from_numpy(a)) == pytest.approx(0.0, abs=1e-8)


def _naive_kid(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]

    def k(u, v):
        return (float(u @ v) / d + 1.0) ** 3

    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_the_naive_unbiased_mmd_and_clips_the_subset_size():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 5)), rng.normal(loc=0.5, size=(6, 5))
    # subset_size clipped to 6 = the whole set: every subset is a permutation, so KID is exactly MMD^2(a, b)
    kid = kernel_inception_distance(torch.from_numpy(a), torch.from_numpy(b), subsets=3, subset_size=1000)
    assert kid.subset_size == 6 and kid.subsets == 3
    assert kid.mean == pytest.approx(_naive_kid(a, b), rel=1e-9)
    assert kid.std == pytest.approx(0.0, abs=1e-9)
    k = (a @ a.T / 5 + 1) ** 3
    assert mmd2_unbiased(k, k, k) == pytest.approx(-2 * k.sum() / 36 + 2 * (k.sum() - np.trace(k)) / 30)


def test_kid_is_seeded():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(30, 4, generator=g), torch.randn(30, 4, generator=g)
    r1 = kernel_inception_distance(a, b, subsets=5, subset_size=10, seed=1)
    r2 = kernel_inception_distance(a, b, subsets=5, subset_size=10, seed=1)
    assert r1 == r2 and r1.subset_size == 10


def test_fid_is_refused_below_the_minimum_saying_how_many_are_needed():
    with pytest.raises(FidRefused, match=r"at least 2048 images in each set; got 6 generated and 5000 reference"):
        check_fid_sizes(6, 5000)
    with pytest.raises(FidRefused, match="at least 100"):
        check_fid_sizes(100, 99, min_images=100)
    check_fid_sizes(100, 100, min_images=100)


def test_fid_refusal_comes_before_any_model_loads(gen_ref):
    gen, ref = gen_ref  # no inception weights anywhere: the size check must answer first, for FID
    s = compute_image_metrics(gen, None, ref, metrics="FID")
    assert s.corpus["FID"] is None
    assert "at least 2048 images" in s.settings["unavailable"]["FID"]
    assert s.settings["FID"]["min_images"] == 2048


def test_fid_and_kid_wiring_with_a_stand_in_feature_extractor(gen_ref, monkeypatch):
    """The Inception network itself needs torch-fidelity + its weights; the plumbing around it does not."""
    import vlgen.metrics.image as image_metrics
    from vlgen.metrics.image.fid import InceptionBundle

    def features(_bundle, images, batch_size=16):  # a deterministic 8-d "feature" per image: its channel stats
        arr = [np.asarray(im, dtype=np.float64) / 255.0 for im in images]
        return torch.tensor([[*a.mean((0, 1)), *a.std((0, 1)), a.max(), a.min()] for a in arr], dtype=torch.float64)

    monkeypatch.setattr(image_metrics, "load_inception", lambda ref, device="cpu": InceptionBundle(None, "stand-in"))
    monkeypatch.setattr(image_metrics, "inception_features", features)
    gen, ref = gen_ref
    s = compute_image_metrics(gen, None, ref, metrics="FID,KID", fid_min_images=2, kid_subsets=4)
    f_gen, f_ref = features(None, gen), features(None, ref)
    assert s.corpus["FID"] == pytest.approx(frechet_distance(f_gen, f_ref))
    assert s.corpus["KID"] == pytest.approx(kernel_inception_distance(f_gen, f_ref, subsets=4).mean)
    assert s.settings["KID"]["subset_size"] == 2 and s.settings["KID"]["subsets"] == 4
    assert s.settings["FID"]["weights"] == "stand-in" and s.settings["FID"]["n_generated"] == 3


def test_default_vgg19_path_with_real_architecture(monkeypatch):
    """The torchvision-weights path on the real VGG19 graph (random weights stand in for ImageNet's)."""
    from torchvision.models.vgg import cfgs, make_layers

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # features only ("E" = VGG19): the 120M-parameter classifier is slow to initialise
        state = {f"features.{k}": v for k, v in make_layers(cfgs["E"]).state_dict().items()}
    monkeypatch.setattr("vlgen.hub.resolve_torchvision_weights", lambda weights, instead: state)
    vgg = load_vgg(None, image_size=64)
    assert vgg.name == "torchvision vgg19 IMAGENET1K_V1" and vgg.indices == (1, 6, 11, 20, 29)
    assert len(vgg.features) == 30  # cut after relu5_1
    rng = np.random.default_rng(0)
    ims = [Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)) for _ in range(2)]
    grams = [g.shape for g in image_grams(vgg, ims)]
    assert grams == [(2, 64, 64), (2, 128, 128), (2, 256, 256), (2, 512, 512), (2, 512, 512)]
    d = gram_distance_matrix(image_grams(vgg, ims), image_grams(vgg, ims))
    assert torch.diagonal(d).abs().max() < 1e-12 and d[0, 1] > 0

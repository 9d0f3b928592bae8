"""`vlgen evaluate images` driven in-process through `vlgen.cli.main`, on tiny CLIP / DINO / VGG."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from vlgen.cli import main
from vlgen.testing.vgg import build_tiny_vgg

KEYS = ["CLIP-T", "CLIP-I", "DINO", "Gram", "FID", "KID", "n_generated", "n_references", "settings"]
PROMPTS = {"000.png": "a red circle", "001.png": "a brown dog on the grass", "002.png": "two <b>cats</b> & a mat"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLGEN_PROGRESS", "0")
    # behave the same whether or not it is installed; the submodule too: an earlier test may have imported it,
    # and `from torch_fidelity.x import y` finds a cached `torch_fidelity.x` before it looks at the package
    for name in ("torch_fidelity", "torch_fidelity.feature_extractor_inceptionv3"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture(scope="module")
def tiny_vgg_dir(tmp_path_factory):
    return build_tiny_vgg(tmp_path_factory.mktemp("tiny") / "vgg", seed=0)


@pytest.fixture
def models(tiny_clip_dir, tiny_dino_dir, tiny_vgg_dir):
    return ["--clip-model", str(tiny_clip_dir), "--dino-model", str(tiny_dino_dir), "--vgg-weights", str(tiny_vgg_dir),
            "--gram-size", "32"]  # fmt: skip


def _image(path, seed, size=(40, 36)):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def gen_dir(tmp_path):
    d = tmp_path / "gen"
    d.mkdir()
    lines = []
    for i, (name, prompt) in enumerate(PROMPTS.items()):
        _image(d / name, i)
        lines.append(json.dumps({"file_name": name, "prompt": prompt, "seed": i, "num_inference_steps": 2}))
    (d / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return d


@pytest.fixture
def ref_dir(tmp_path):
    d = tmp_path / "refs"
    d.mkdir()
    _image(d / "a.jpg", 10, (48, 48))
    _image(d / "b.png", 11, (30, 50))
    return d


def _run(args, capsys):
    rc = main(["evaluate", "images", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _fails(args, capsys, *needles):
    rc, out, err = _run(args, capsys)
    assert rc == 1, (out, err)
    assert "Traceback" not in err and err.count("error:") == 1
    for n in needles:
        assert str(n) in err, err
    return err


def test_json_prints_one_object_with_the_contract_keys(gen_dir, ref_dir, models, capsys):
    rc, out, err = _run([gen_dir, "--references", ref_dir, "--json", *models], capsys)
    assert rc == 0, err
    obj = json.loads(out)
    assert list(obj) == KEYS
    assert obj["n_generated"] == 3 and obj["n_references"] == 2
    for k in ("CLIP-T", "CLIP-I", "DINO", "Gram"):
        assert isinstance(obj[k], float), k
    assert obj["CLIP-T"] >= 0 and -1 <= obj["CLIP-I"] <= 1 and obj["Gram"] >= 0
    s = obj["settings"]
    assert s["CLIP-T"]["n_images"] == 3 and s["CLIP-I"]["pairs"] == 6 and s["DINO"]["n_references"] == 2
    assert s["Gram"]["layers"] == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert obj["FID"] is None and "at least 2048 images" in s["unavailable"]["FID"]
    assert obj["KID"] is None and "torch-fidelity" in s["unavailable"]["KID"]
    assert s["inputs"]["prompts"].endswith("metadata.jsonl")
    assert "FID not computed" in err  # the refusal is said, not only recorded


def test_table_output(gen_dir, ref_dir, models, capsys):
    rc, out, err = _run([gen_dir, "--references", ref_dir, *models], capsys)
    assert rc == 0, err
    for k in ("CLIP-T", "CLIP-I", "DINO", "Gram", "FID", "KID", "lower", "higher"):
        assert k in out


def test_out_writes_report_metrics_and_per_image(gen_dir, ref_dir, models, tmp_path, capsys):
    out_dir = tmp_path / "eval"
    rc, out, _ = _run([gen_dir, "--references", ref_dir, "--json", "--out", out_dir, *models], capsys)
    assert rc == 0
    assert json.loads((out_dir / "metrics.json").read_text()) == json.loads(out)
    rows = [json.loads(x) for x in (out_dir / "per_image.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in rows] == list(PROMPTS)
    assert [r["prompt"] for r in rows] == list(PROMPTS.values())
    assert all({"CLIP-T", "CLIP-I", "DINO", "Gram"} <= set(r) for r in rows)
    assert rows[1]["meta"] == {"seed": 1, "num_inference_steps": 2}
    assert np.mean([r["CLIP-T"] for r in rows]) == pytest.approx(json.loads(out)["CLIP-T"])
    page = (out_dir / "report.html").read_text()
    assert page.count('src="thumbs/gen_') == 3 and page.count('src="thumbs/ref_') == 2
    assert "two &lt;b&gt;cats&lt;/b&gt; &amp; a mat" in page and "<b>cats</b>" not in page  # prompts escaped
    assert "at least 2048 images" in page
    assert all((out_dir / "thumbs" / f"gen_{i:05d}.jpg").is_file() for i in range(3))


def test_prompt_sources_agree(gen_dir, models, tmp_path, capsys):
    """metadata.jsonl, --prompts JSONL, --prompts text (sorted file order) and --data give the same CLIP-T."""
    text = tmp_path / "prompts.txt"
    text.write_text("\n".join(PROMPTS[k] for k in sorted(PROMPTS)) + "\n")
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text("".join(json.dumps({"file_name": k, "prompt": v}) + "\n" for k, v in reversed(PROMPTS.items())))
    data = tmp_path / "dataset"
    data.mkdir()
    (data / "metadata.jsonl").write_text(
        "".join(json.dumps({"file_name": k, "text": [v]}) + "\n" for k, v in PROMPTS.items())
    )
    values = []
    for extra in ([], ["--prompts", text], ["--prompts", jsonl], ["--data", data]):
        rc, out, err = _run([gen_dir, "--json", "--metrics", "CLIP-T", *models, *extra], capsys)
        assert rc == 0, err
        values.append(json.loads(out)["CLIP-T"])
    assert values == pytest.approx([values[0]] * 4)


def _reasons(err: str) -> dict[str, str]:
    """{metric: reason} from the one-line 'note: KEY not computed: REASON' messages on stderr."""
    lines = [line.removeprefix("note: ") for line in err.splitlines() if line.startswith("note: ")]
    return dict(line.split(" not computed: ", 1) for line in lines)


def test_no_prompts_and_no_references_exit_1_with_one_reason_per_line(gen_dir, models, capsys):
    """Issue 14: nothing computable is a failure (exit 1, nothing on stdout), each reason on its own line."""
    (gen_dir / "metadata.jsonl").unlink()
    rc, out, err = _run([gen_dir, "--json", *models], capsys)
    assert rc == 1 and out == ""
    why = _reasons(err)
    assert list(why) == KEYS[:6]
    assert "no prompts" in why["CLIP-T"] and "--references" in why["DINO"]
    assert err.count("error:") == 1 and "none of the requested metrics" in err and "Traceback" not in err


def test_default_models_offline_exit_1_naming_the_resolvers_reason(gen_dir, ref_dir, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr("torch.hub.get_dir", lambda: str(tmp_path / "empty-torch-hub"))
    rc, out, err = _run([gen_dir, "--references", ref_dir, "--json"], capsys)
    assert rc == 1 and out == "", err
    why = _reasons(err)
    assert "openai/clip-vit-large-patch14" in why["CLIP-T"] and "HF_HUB_OFFLINE" in why["CLIP-T"]
    assert "facebook/dino-vits16" in why["DINO"]
    assert "vgg19" in why["Gram"].lower()
    assert "`--vgg-weights DIR`" in why["Gram"] and "`vlgen tiny vgg19 DIR`" in why["Gram"]  # an offline route
    assert err.count("error:") == 1


def test_some_metrics_computed_exit_0_with_nulls_and_reasons(
    gen_dir, ref_dir, tiny_dino_dir, monkeypatch, tmp_path, capsys
):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr("torch.hub.get_dir", lambda: str(tmp_path / "empty-torch-hub"))
    rc, out, err = _run([gen_dir, "--references", ref_dir, "--json", "--dino-model", tiny_dino_dir], capsys)
    assert rc == 0, err
    obj = json.loads(out)
    assert isinstance(obj["DINO"], float)
    why = obj["settings"]["unavailable"]
    assert obj["CLIP-T"] is None and "openai/clip-vit-large-patch14" in why["CLIP-T"]
    assert obj["Gram"] is None and "vlgen tiny vgg19" in why["Gram"]
    assert _reasons(err)["Gram"] == why["Gram"] and "error:" not in err


def test_gram_offline_through_vlgen_tiny_vgg19(gen_dir, ref_dir, tmp_path, capsys):
    """Issue 14: `vlgen tiny vgg19 DIR` then `--vgg-weights DIR` computes Gram with no download."""
    from vlgen.cli import main

    vgg = tmp_path / "vgg19"
    assert main(["tiny", "vgg19", str(vgg), "--seed", "1"]) == 0
    capsys.readouterr()
    rc, out, err = _run([gen_dir, "--references", ref_dir, "--json", "--metrics", "Gram", "--vgg-weights", vgg,
                         "--gram-size", "32"], capsys)  # fmt: skip
    assert rc == 0, err
    obj = json.loads(out)
    assert obj["Gram"] > 0 and obj["settings"]["Gram"]["weights"] == str(vgg)
    assert obj["settings"]["Gram"]["layers"] == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]


def test_fid_min_images_option_and_missing_torch_fidelity(gen_dir, ref_dir, models, capsys):
    rc, out, err = _run([gen_dir, "--references", ref_dir, "--json", "--metrics", "FID,KID", "--fid-min-images", "2",
                         *models], capsys)  # fmt: skip
    assert rc == 1 and out == ""  # neither could be computed
    why = _reasons(err)
    assert "pip install torch-fidelity" in why["FID"] and "pip install torch-fidelity" in why["KID"]
    rc, out, err = _run(
        [gen_dir, "--references", ref_dir, "--json", "--metrics", "FID,DINO", "--fid-min-images", "50", *models],
        capsys,
    )
    assert rc == 0
    assert (
        "at least 50 images in each set; got 3 generated and 2 reference"
        in json.loads(out)["settings"]["unavailable"]["FID"]
    )


def test_explicit_inception_weights_without_torch_fidelity_is_an_error(gen_dir, ref_dir, tmp_path, capsys):
    w = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    w.write_bytes(b"x")
    _fails([gen_dir, "--references", ref_dir, "--metrics", "KID", "--inception-weights", w], capsys, "torch-fidelity")


# ---- bad input: exit 1, one "error:" line naming the file (and line), no traceback


def test_empty_gen_dir(tmp_path, capsys):
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "notes.txt").write_text("hi")
    _fails([tmp_path / "gen"], capsys, "no image files", tmp_path / "gen")


def test_missing_gen_dir(tmp_path, capsys):
    _fails([tmp_path / "nope"], capsys, "not found", tmp_path / "nope")


def test_unreadable_image_is_named(gen_dir, models, capsys):
    (gen_dir / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    _fails([gen_dir, *models], capsys, gen_dir / "001.png")


def test_truncated_image_is_named(gen_dir, models, capsys):
    data = (gen_dir / "002.png").read_bytes()
    (gen_dir / "002.png").write_bytes(data[: len(data) // 2])
    _fails([gen_dir, "--metrics", "CLIP-T", *models], capsys, gen_dir / "002.png", "truncated")


def test_prompt_line_without_image_names_file_and_line(gen_dir, capsys):
    meta = gen_dir / "metadata.jsonl"
    meta.write_text(meta.read_text() + json.dumps({"file_name": "003.png", "prompt": "extra"}) + "\n")
    _fails([gen_dir], capsys, f"{meta}:4", "003.png")


def test_image_without_prompt_is_named(gen_dir, capsys):
    _image(gen_dir / "004.png", 4)
    _fails([gen_dir], capsys, gen_dir / "004.png", "no prompt")


def test_duplicate_and_malformed_prompt_lines(gen_dir, tmp_path, capsys):
    dup = tmp_path / "p.jsonl"
    dup.write_text("".join(json.dumps({"file_name": k, "prompt": "x"}) + "\n" for k in [*PROMPTS, "000.png"]))
    _fails([gen_dir, "--prompts", dup], capsys, f"{dup}:4", "repeats line 1")
    bad = tmp_path / "q.jsonl"
    bad.write_text(json.dumps({"file_name": "000.png", "prompt": "x"}) + "\n{not json\n")
    _fails([gen_dir, "--prompts", bad], capsys, f"{bad}:2", "not valid JSON")
    nop = tmp_path / "r.jsonl"
    nop.write_text(json.dumps({"file_name": "000.png", "caption": "x"}) + "\n")
    _fails([gen_dir, "--prompts", nop], capsys, f"{nop}:1", "'prompt'")


def test_text_prompts_count_mismatch(gen_dir, tmp_path, capsys):
    p = tmp_path / "prompts.txt"
    p.write_text("one\ntwo\n")
    _fails([gen_dir, "--prompts", p], capsys, p, "2 prompts for 3 images", "000.png first")


def test_missing_or_empty_references(gen_dir, tmp_path, capsys):
    _fails([gen_dir, "--references", tmp_path / "no-refs"], capsys, tmp_path / "no-refs", "not found")
    (tmp_path / "empty").mkdir()
    _fails([gen_dir, "--references", tmp_path / "empty"], capsys, tmp_path / "empty", "no image files")


def test_explicit_clip_model_that_fails_to_load_is_an_error(gen_dir, tmp_path, capsys):
    _fails([gen_dir, "--clip-model", tmp_path / "no-clip"], capsys, "no-clip")


def test_unknown_metric_and_unknown_layer(gen_dir, ref_dir, models, capsys):
    _fails([gen_dir, "--metrics", "CLIP-X"], capsys, "CLIP-X", "CLIP-T")
    _fails([gen_dir, "--references", ref_dir, "--metrics", "Gram", *models, "--gram-layers", "relu1_1,conv9_1"],
           capsys, "conv9_1")  # fmt: skip


def test_cli_defaults_are_the_library_defaults():
    """Issue 16: `evaluate images` imports its defaults from the library instead of retyping them."""
    import inspect

    from vlgen.cli.evaluate import images
    from vlgen.metrics.image import compute_image_metrics

    lib = inspect.signature(compute_image_metrics).parameters
    cli = {name: p.default.default for name, p in inspect.signature(images).parameters.items()}
    same = ("fid_min_images", "kid_subsets", "kid_subset_size", "seed", "batch_size", "device")
    for cli_name, lib_name in [("gram_size", "gram_image_size"), *((n, n) for n in same)]:
        assert cli[cli_name] == lib[lib_name].default, cli_name
    assert cli["gram_layers"] == ",".join(lib["gram_layers"].default)

"""WD14 taggers (issue 18 item 2): the tiny tagger through the CLI and the API, thresholds, tag formatting,
--tags-with, and one-line errors for a broken tagger directory."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import vlgen
from vlgen.captioning.registry import family_of, load_captioner, load_captioner_with_tags
from vlgen.captioning.wd_tagger import (
    TAGS_FILE,
    TagList,
    WdTaggerCaptioner,
    format_tag,
    read_tag_list,
    select_tags,
)
from vlgen.cli import main
from vlgen.errors import ConfigError, ModelNotAvailableError
from vlgen.testing import MARKER, build_tiny, file_digests
from vlgen.testing.wd_tagger import TINY_TAGS

# Scores the biased tagger gives every image (head weights 0, bias = logit(score)).
KNOWN = {
    "general": 0.99, "sensitive": 0.98, "questionable": 0.97, "explicit": 0.96,  # ratings: never in a caption
    "1girl": 0.9, "solo": 0.36, "long_hair": 0.34, "looking_at_viewer": 0.5, "open_mouth": 0.1,
    "^_^": 0.6, "(o)_(o)": 0.7, "smile": 0.2, "hatsune_miku": 0.86, "ganyu_(genshin_impact)": 0.84,
}  # fmt: skip
# At the defaults (general >= 0.35, character >= 0.85), by score
DEFAULT_CAPTION = "1girl, hatsune miku, \\(o\\)_\\(o\\), ^_^, looking at viewer, solo"
# --general-threshold 0.55 --character-threshold 0.8
STRICT_CAPTION = "1girl, hatsune miku, ganyu \\(genshin impact\\), \\(o\\)_\\(o\\), ^_^"


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory):
    return build_tiny("wd-tagger", tmp_path_factory.mktemp("tiny") / "wd-tagger", seed=0)


@pytest.fixture(scope="module")
def known_dir(tagger_dir, tmp_path_factory):
    """The tiny tagger with a head that ignores the image: every image scores KNOWN."""
    tagger = WdTaggerCaptioner.load(tagger_dir)
    logits = torch.tensor([math.log(KNOWN[n] / (1 - KNOWN[n])) for n, _ in TINY_TAGS])
    with torch.no_grad():
        tagger.model.head.weight.zero_()
        tagger.model.head.bias.copy_(logits)
    return tagger.save(tmp_path_factory.mktemp("known") / "tagger")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i, size in enumerate([(40, 24), (24, 40), (32, 32)]):
        arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / f"im{i}.png")
    return root


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tiny_tagger_has_the_wd_layout_and_loads_its_weights(tagger_dir):
    assert {p.name for p in tagger_dir.iterdir()} == {"model.safetensors", "config.json", TAGS_FILE, MARKER}
    config = json.loads((tagger_dir / "config.json").read_text())
    assert config["architecture"] == "vit_base_patch16_224" and config["num_classes"] == len(TINY_TAGS)
    assert config["pretrained_cfg"]["mean"] == [0.5] * 3
    tags = read_tag_list(tagger_dir / TAGS_FILE)
    assert list(zip(tags.names, tags.categories, strict=True)) == list(TINY_TAGS)
    assert family_of(tagger_dir) == "wd-tagger"  # told from timm's config.json
    tagger = load_captioner(tagger_dir)
    assert isinstance(tagger, WdTaggerCaptioner) and type(tagger.model).__name__ == "VisionTransformer"
    saved = load_file(tagger_dir / "model.safetensors")
    state = tagger.model.state_dict()
    assert saved.keys() == state.keys() and all(torch.equal(saved[k], state[k]) for k in saved)
    assert tagger.input_size == (32, 32)


def test_same_seed_same_files_other_seed_other_weights(tagger_dir, tmp_path):
    first = file_digests(tagger_dir)
    assert file_digests(build_tiny("wd-tagger", tmp_path / "again", seed=0)) == first
    other = file_digests(build_tiny("wd-tagger", tmp_path / "seed1", seed=1))
    assert other["model.safetensors"] != first["model.safetensors"]
    assert all(other[p] == first[p] for p in ("config.json", TAGS_FILE))


def test_preprocessing_pads_on_white_resizes_and_feeds_bgr(tagger_dir):
    """SmilingWolf's: centred on a white square, the model's transform (bicubic to 32, mean/std 0.5), then BGR."""
    tagger = WdTaggerCaptioner.load(tagger_dir)
    image = Image.new("RGB", (40, 20), (255, 0, 0))  # red, wider than high
    square = Image.new("RGB", (40, 40), (255, 255, 255))
    square.paste(image, (0, 10))
    rgb = torch.from_numpy(np.asarray(square.resize((32, 32), Image.BICUBIC), dtype=np.float32) / 255.0)
    expected = ((rgb - 0.5) / 0.5).permute(2, 0, 1)[[2, 1, 0]]  # (3, 32, 32), BGR
    got = tagger.pixel_values([image])
    assert got.shape == (1, 3, 32, 32)
    torch.testing.assert_close(got[0], expected, atol=1e-5, rtol=0)
    assert got[0, 0, 16, 16] == -1 and got[0, 2, 16, 16] == 1  # the image's middle: blue channel first
    assert torch.all(got[0, :, 0, :] == 1)  # the top row is the white padding


def test_thresholds_select_and_ratings_stay_out(known_dir, images):
    tagger = load_captioner(known_dir)
    image = Image.open(images / "im0.png")
    result = tagger.tag([image])[0]
    assert result.caption == DEFAULT_CAPTION
    assert result.ratings == pytest.approx({n: KNOWN[n] for n in ("general", "sensitive", "questionable", "explicit")})
    selected = ("1girl", "hatsune_miku", "(o)_(o)", "^_^", "looking_at_viewer", "solo")
    assert dict(result.tags) == pytest.approx({n: KNOWN[n] for n in selected})
    tagger.general_threshold, tagger.character_threshold = 0.55, 0.8
    assert tagger.generate([image]) == [STRICT_CAPTION]
    tagger.general_threshold, tagger.character_threshold = 0.0, 1.01  # everything general, no character
    assert "hatsune" not in tagger.generate([image])[0] and "open mouth" in tagger.generate([image])[0]


def test_select_tags_is_inclusive_and_ties_keep_the_list_order():
    tags = TagList(("a_b_c", "zz_top", "x", "safe"), (0, 0, 4, 9))
    result = select_tags([0.5, 0.5, 0.85, 1.0], tags, 0.5, 0.85)
    assert result.tags == [("x", 0.85), ("a_b_c", 0.5), ("zz_top", 0.5)]
    assert result.caption == "x, a b c, zz top"


@pytest.mark.parametrize(
    ("tag", "written"),
    [
        ("long_hair", "long hair"),
        ("looking_at_viewer", "looking at viewer"),
        ("^_^", "^_^"),  # kaomoji keep their underscores (kohya: 3 characters or fewer)
        (">_<", ">_<"),
        ("o_o", "o_o"),
        ("0_0", "0_0"),
        ("||_||", "||_||"),  # longer kaomoji, from the WD tagger UIs' list
        ("(o)_(o)", "\\(o\\)_\\(o\\)"),
        ("<o>_<o>", "<o>_<o>"),
        ("ganyu_(genshin_impact)", "ganyu \\(genshin impact\\)"),
        ("1girl", "1girl"),
    ],
)
def test_tag_formatting(tag, written):
    assert format_tag(tag) == written


def test_cli_caption_with_thresholds_writes_tags_and_scores(known_dir, images, tmp_path, capsys):
    out = tmp_path / "tags.jsonl"
    args = ["caption", str(images), "--model", str(known_dir), "--out", str(out)]
    assert main([*args, "--general-threshold", "0.55", "--character-threshold", "0.8"]) == 0
    rows = _rows(out)
    assert [r["file_name"] for r in rows] == ["im0.png", "im1.png", "im2.png"]
    assert {r["caption"] for r in rows} == {STRICT_CAPTION}
    assert rows[0]["tags"] == pytest.approx(
        {n: KNOWN[n] for n in ("1girl", "hatsune_miku", "ganyu_(genshin_impact)", "(o)_(o)", "^_^")}, abs=1e-4
    )
    assert list(rows[0]["tags"]) == ["1girl", "hatsune_miku", "ganyu_(genshin_impact)", "(o)_(o)", "^_^"]
    out2 = tmp_path / "defaults.jsonl"
    assert main(["caption", str(images / "im1.png"), "--model", str(known_dir), "--out", str(out2)]) == 0
    assert _rows(out2)[0]["caption"] == DEFAULT_CAPTION
    capsys.readouterr()


def test_api_caption_equals_the_cli(tagger_dir, images, tmp_path, capsys):
    """Random tiny tagger: the captions depend on the image, and the API gives the CLI's."""
    out = tmp_path / "c.jsonl"
    assert main(["caption", str(images), "--model", str(tagger_dir), "--out", str(out)]) == 0
    capsys.readouterr()
    paths = sorted(images.iterdir())
    api = vlgen.caption(paths, model=str(tagger_dir), device="cpu")
    assert api == [r["caption"] for r in _rows(out)]
    assert len(set(api)) > 1  # the tiny tagger's tags follow the image


def test_tags_with_merges_caption_then_tags(tiny_blip_dir, known_dir, images, tmp_path, capsys):
    plain, merged = tmp_path / "plain.jsonl", tmp_path / "merged.jsonl"
    base = ["caption", str(images), "--model", str(tiny_blip_dir), "--num-beams", "1", "--max-new-tokens", "5"]
    assert main([*base, "--out", str(plain)]) == 0
    assert main([*base, "--out", str(merged), "--tags-with", str(known_dir), "--general-threshold", "0.55",
                 "--character-threshold", "0.8"]) == 0  # fmt: skip
    capsys.readouterr()
    for p, m in zip(_rows(plain), _rows(merged), strict=True):
        assert m["file_name"] == p["file_name"]
        assert m["caption"] == f"{p['caption']}, {STRICT_CAPTION}"
        assert set(m["tags"]) == {"1girl", "hatsune_miku", "ganyu_(genshin_impact)", "(o)_(o)", "^_^"}
    captioner = load_captioner_with_tags(tiny_blip_dir, tags_with=known_dir)  # the API, default thresholds
    image = Image.open(images / "im2.png").convert("RGB")
    alone = load_captioner(tiny_blip_dir).generate([image], num_beams=1, max_new_tokens=5)[0]
    assert captioner.generate([image], num_beams=1, max_new_tokens=5) == [f"{alone}, {DEFAULT_CAPTION}"]


def test_autocaption_tags_with(tiny_blip_dir, known_dir, images, tmp_path, capsys):
    folder = tmp_path / "train"
    shutil.copytree(images, folder)
    args = ["autocaption", str(folder), "--model", str(tiny_blip_dir), "--num-beams", "1", "--max-new-tokens", "5"]
    assert main([*args, "--template", "TOK, {caption}", "--tags-with", str(known_dir)]) == 0
    capsys.readouterr()
    rows = _rows(folder / "metadata.jsonl")
    assert len(rows) == 3
    for row in rows:
        assert row["raw_caption"].endswith(f", {DEFAULT_CAPTION}") and row["text"] == f"TOK, {row['raw_caption']}"
        assert row["tags_model"] == str(known_dir)


def test_tiny_cli_builds_a_tagger_vlgen_caption_reads(tmp_path, images, capsys):
    out = tmp_path / "wd"
    assert main(["tiny", "wd-tagger", str(out), "--seed", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(out.resolve())
    assert main(["caption", str(images / "im0.png"), "--model", str(out), "--out", str(tmp_path / "c.jsonl")]) == 0
    capsys.readouterr()
    assert _rows(tmp_path / "c.jsonl")[0]["caption"]


def test_directory_without_the_tag_list_is_one_line_naming_it(tagger_dir, images, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tagger_dir, broken)
    (broken / TAGS_FILE).unlink()
    code = main(["caption", str(images / "im0.png"), "--model", str(broken), "--out", str(tmp_path / "c.jsonl")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "Traceback" not in err
    assert len(err.splitlines()) == 1 and str(broken / TAGS_FILE) in err


def test_tag_list_that_does_not_fit_the_model_is_one_line(tagger_dir, tmp_path):
    broken = tmp_path / "short"
    shutil.copytree(tagger_dir, broken)
    lines = (broken / TAGS_FILE).read_text().splitlines()
    (broken / TAGS_FILE).write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ModelNotAvailableError, match=r"lists 13 tags but the model has 14 outputs"):
        WdTaggerCaptioner.load(broken)


def test_thresholds_need_a_tagger_and_a_valid_value(tiny_blip_dir, known_dir, images, tmp_path, capsys):
    args = ["caption", str(images), "--out", str(tmp_path / "c.jsonl")]
    assert main([*args, "--model", str(tiny_blip_dir), "--general-threshold", "0.5"]) == 1
    err = capsys.readouterr().err
    assert "--general-threshold" in err and "WD tagger" in err and not (tmp_path / "c.jsonl").exists()
    with pytest.raises(ConfigError, match="--character-threshold"):
        load_captioner_with_tags(known_dir, character_threshold=-0.1)

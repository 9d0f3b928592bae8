"""Tiny WD14 tagger laid out like SmilingWolf/wd-vit-tagger-v3: a timm `vit_base_patch16_224` at toy width
(32 px, patch 8, 2 blocks of width 32; the v3 ViT's own settings: no class token, average pooling, no fc norm,
tanh GELU) with one output per tag, saved as `model.safetensors` + timm's `config.json` + `selected_tags.csv`.

The tag list has each category the loader handles: the four ratings (9), general tags (0) with two kaomoji
(`^_^` within kohya's 3-character rule, `(o)_(o)` only in the kaomoji list) and character tags (4), one with
parentheses. It loads through `vlgen.captioning.wd_tagger.WdTaggerCaptioner.load(dir)`, the path a downloaded
tagger takes (`timm.create_model("local-dir:DIR", pretrained=True)`).
"""

from __future__ import annotations

import os
from pathlib import Path

from vlgen.testing._common import seeded, write_model_dir

TINY_IMAGE_SIZE = 32
# (name, category) in output order; ratings first, as in the v3 repos
TINY_TAGS: tuple[tuple[str, int], ...] = (
    ("general", 9),
    ("sensitive", 9),
    ("questionable", 9),
    ("explicit", 9),
    ("1girl", 0),
    ("solo", 0),
    ("long_hair", 0),
    ("looking_at_viewer", 0),
    ("open_mouth", 0),
    ("^_^", 0),
    ("(o)_(o)", 0),
    ("smile", 0),
    ("hatsune_miku", 4),
    ("ganyu_(genshin_impact)", 4),
)


def tiny_wd_tagger_config(num_tags: int = len(TINY_TAGS)) -> dict:
    """timm's config.json in the shape of the v3 repos (architecture, model_args, pretrained_cfg)."""
    return {
        "architecture": "vit_base_patch16_224",
        "num_classes": num_tags,
        "num_features": 32,
        "global_pool": "avg",
        "model_args": {
            "img_size": TINY_IMAGE_SIZE,
            "patch_size": 8,
            "embed_dim": 32,
            "depth": 2,
            "num_heads": 2,
            "class_token": False,
            "global_pool": "avg",
            "fc_norm": False,
            "act_layer": "gelu_tanh",
        },
        "pretrained_cfg": {
            "custom_load": False,
            "input_size": [3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE],
            "fixed_input_size": False,
            "interpolation": "bicubic",
            "crop_pct": 1.0,
            "crop_mode": "center",
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
            "num_classes": num_tags,
            "first_conv": "patch_embed.proj",
            "classifier": "head",
        },
    }


def build_tiny_wd_tagger(out: str | os.PathLike, seed: int = 0) -> Path:
    """Random tiny WD tagger (timm ViT) in the WD layout (about 150 KB)."""
    import timm
    import torch

    from vlgen.captioning.wd_tagger import TagList, write_wd_tagger

    config = tiny_wd_tagger_config()
    tag_list = TagList(tuple(n for n, _ in TINY_TAGS), tuple(c for _, c in TINY_TAGS))

    def build(tmp: Path) -> None:
        with seeded(seed):
            model = timm.create_model(config["architecture"], num_classes=config["num_classes"], **config["model_args"])
            with torch.no_grad():  # timm starts the head near 0 (every score ~0.5): spread the scores
                torch.nn.init.normal_(model.head.weight, std=0.5)
                torch.nn.init.normal_(model.head.bias, std=1.0)
        write_wd_tagger(tmp, model.eval(), tag_list, config, counts=[1000 - i for i in range(len(tag_list))])

    return write_model_dir(out, "wd-tagger", seed, build)

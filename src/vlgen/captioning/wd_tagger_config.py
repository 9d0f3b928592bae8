"""The WD tagger family's names and defaults, torch-free (the CLI's options read them without importing torch)."""

from __future__ import annotations

FAMILY = "wd-tagger"
DEFAULT_REPO = "SmilingWolf/wd-vit-tagger-v3"
# The v3 family (all timm: ViT, SwinV2, ConvNeXt, ViT-Large, EVA02-Large).
WD_TAGGER_REPOS = (
    "SmilingWolf/wd-vit-tagger-v3",
    "SmilingWolf/wd-swinv2-tagger-v3",
    "SmilingWolf/wd-convnext-tagger-v3",
    "SmilingWolf/wd-vit-large-tagger-v3",
    "SmilingWolf/wd-eva02-large-tagger-v3",
)
# kohya's tag_images_by_wd14_tagger.py defaults (--general_threshold 0.35) and the WD tagger UIs' 0.85
DEFAULT_GENERAL_THRESHOLD = 0.35
DEFAULT_CHARACTER_THRESHOLD = 0.85

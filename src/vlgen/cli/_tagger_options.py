"""The WD tagger options `vlgen caption` and `vlgen autocaption` share (--tags-with and the two thresholds)."""

from __future__ import annotations

import typer

from vlgen.captioning.wd_tagger_config import DEFAULT_CHARACTER_THRESHOLD, DEFAULT_GENERAL_THRESHOLD, DEFAULT_REPO

TAGS_WITH = typer.Option(
    None,
    "--tags-with",
    metavar="CAPTIONER",
    help=f"Follow each caption with this tagger's tags: 'CAPTION, TAGS' (e.g. {DEFAULT_REPO}, or "
    "wd-swinv2/-convnext/-eva02-large-tagger-v3; hub id or directory). --model may be a WD tagger too: tags alone.",
    show_default=False,
)
GENERAL_THRESHOLD = typer.Option(
    None,
    "--general-threshold",
    help=f"WD tagger: lowest score of a general tag in the caption (default {DEFAULT_GENERAL_THRESHOLD}).",
    show_default=False,
)
CHARACTER_THRESHOLD = typer.Option(
    None,
    "--character-threshold",
    help=f"WD tagger: lowest score of a character tag (default {DEFAULT_CHARACTER_THRESHOLD}; above 1: none).",
    show_default=False,
)

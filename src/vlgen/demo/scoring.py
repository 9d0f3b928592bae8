"""Does a picture show what its prompt asked for? The demo's round-trip content score (issue 15).

`shape_colour_accuracy`: for each (prompt, recovered caption) pair, the share of the prompt's colour and shape
words (the synthetic world's vocabulary, vlgen.data.synth) that the caption names, averaged over the pairs.
"a small green triangle above a large yellow circle" asks for {green, triangle, yellow, circle}; a caption
"a large yellow circle" recovers 2 of 4 = 0.5. Which colour goes with which shape is not scored, plurals
count as their singular ("triangles" = triangle), and a word asked for twice ("a green circle above a green
square") counts once. Pairs whose prompt names no colour or shape are left out (and counted).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from vlgen.data.synth import COLORS, SHAPES

_WORD = re.compile(r"[a-z]+")


def content_words(text: str) -> set[str]:
    """The colour and shape words of `text` (lower-cased, plurals singularised)."""
    out = set()
    for w in _WORD.findall(text.lower()):
        if w in COLORS or w in SHAPES:
            out.add(w)
        elif w.endswith("s") and w[:-1] in SHAPES:
            out.add(w[:-1])
    return out


def shape_colour_accuracy(prompts: Sequence[str], captions: Sequence[str]) -> dict[str, Any]:
    """{"shape_colour_accuracy": mean share (None if no pair counts), "n": pairs scored, "skipped": pairs
    whose prompt has no colour/shape word}. `prompts[i]` is scored against `captions[i]`."""
    if len(prompts) != len(captions):
        raise ValueError(f"{len(prompts)} prompts but {len(captions)} captions")
    shares, skipped = [], 0
    for prompt, caption in zip(prompts, captions, strict=True):
        asked = content_words(prompt)
        if not asked:
            skipped += 1
            continue
        shares.append(len(asked & content_words(caption)) / len(asked))
    mean = sum(shares) / len(shares) if shares else None
    return {"shape_colour_accuracy": mean, "n": len(shares), "skipped": skipped}

"""Time vlgen's coco-caption metrics against pycocoevalcap's own COCOEvalCap flow, on the same captions.

    .venv/bin/python benchmarks/bench_caption_metrics.py [--items 5000] [--refs 5] [--seed 0] [--out PATH]

Synthetic COCO-like captions come from a small grammar and a seeded RNG; predictions share words with their
references at varying rates so scores are spread out. Both sides compute BLEU-1..4, METEOR, ROUGE-L and CIDEr
(SPICE is off on both: it needs CoreNLP). vlgen "cold" includes starting the METEOR JVM; "warm" is a second
call in the same process (what a trainer scoring every epoch pays). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from pathlib import Path

SUBJECTS = [
    "a man",
    "a woman",
    "two dogs",
    "a cat",
    "a group of people",
    "a young boy",
    "a giraffe",
    "a red bus",
    "an old truck",
    "a little girl",
    "a surfer",
    "a baseball player",
    "three horses",
    "a plate of food",
]
VERBS = ["standing", "sitting", "riding", "walking", "playing", "eating", "parked", "lying", "running", "looking"]
PREPS = ["on", "in", "next to", "near", "under", "in front of", "on top of", "behind", "along"]
OBJECTS = ["a beach", "the street", "a wooden table", "a grassy field", "a kitchen counter", "the snow", "a bench",
           "a city sidewalk", "the water", "a laptop", "a tree", "a fence", "the ocean", "a couch"]  # fmt: skip
EXTRAS = ["", "", " with a frisbee", " at night", " on a sunny day", " while it rains", " with friends"]
ENDINGS = ["", "", ".", " ."]


def caption(rng: random.Random, base: tuple[str, str, str, str, str] | None = None, keep: float = 1.0) -> str:
    """A caption; with `base`, each slot is kept with probability `keep` (else re-drawn)."""
    slots = [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(PREPS), rng.choice(OBJECTS), rng.choice(EXTRAS)]
    if base is not None:
        slots = [b if rng.random() < keep else s for b, s in zip(base, slots, strict=True)]
    text = f"{slots[0]} {slots[1]} {slots[2]} {slots[3]}{slots[4]}{rng.choice(ENDINGS)}"
    return text[0].upper() + text[1:] if rng.random() < 0.5 else text


def make_data(n: int, k: int, seed: int) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)
    preds, refs = [], []
    for _ in range(n):
        base = (rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(PREPS), rng.choice(OBJECTS), rng.choice(EXTRAS))
        refs.append([caption(rng, base, keep=0.7) for _ in range(k)])
        preds.append(caption(rng, base, keep=rng.random()))
    return preds, refs


def official(preds: list[str], refs: list[list[str]]) -> dict[str, float]:
    """COCOEvalCap.evaluate() minus SPICE and the COCO api objects."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = {i: [{"caption": r} for r in rs] for i, rs in enumerate(refs)}
    res = {i: [{"caption": p}] for i, p in enumerate(preds)}
    tok = PTBTokenizer()
    gts, res = tok.tokenize(gts), tok.tokenize(res)
    out: dict[str, float] = {}
    for scorer, names in [(Bleu(4), ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"]), (Meteor(), ["METEOR"]),
                          (Rouge(), ["ROUGE-L"]), (Cider(), ["CIDEr"])]:  # fmt: skip
        kwargs = {"verbose": 0} if isinstance(scorer, Bleu) else {}
        score, _ = scorer.compute_score(gts, res, **kwargs)
        for name, value in zip(names, score if len(names) > 1 else [score], strict=True):
            out[name] = float(value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--refs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_caption_metrics.json")
    args = ap.parse_args()

    from vlgen.fileio import write_json
    from vlgen.metrics.coco import COCO_KEYS, coco_caption_scores

    preds, refs = make_data(args.items, args.refs, args.seed)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    ref_scores = official(preds, refs)
    timings["pycocoevalcap"] = time.perf_counter() - t

    t = time.perf_counter()
    cold = coco_caption_scores(preds, refs, spice=False)
    timings["vlgen (cold)"] = time.perf_counter() - t
    t = time.perf_counter()
    coco_caption_scores(preds, refs, spice=False)
    timings["vlgen (warm)"] = time.perf_counter() - t

    diffs = {k: abs(float(cold.corpus[k]) - ref_scores[k]) for k in COCO_KEYS}  # type: ignore[arg-type]
    print(f"{args.items} items x {args.refs} references, seed {args.seed}\n")
    print(f"{'metric':<10}{'pycocoevalcap':>16}{'vlgen':>16}{'|diff|':>12}")
    for k in COCO_KEYS:
        print(f"{k:<10}{ref_scores[k]:>16.6f}{cold.corpus[k]:>16.6f}{diffs[k]:>12.2e}")
    print(f"\n{'run':<16}{'seconds':>10}{'speed-up':>10}")
    for name, sec in timings.items():
        print(f"{name:<16}{sec:>10.2f}{timings['pycocoevalcap'] / sec:>9.2f}x")

    result = {
        "items": args.items,
        "refs": args.refs,
        "seed": args.seed,
        "seconds": timings,
        "pycocoevalcap": ref_scores,
        "vlgen": {k: cold.corpus[k] for k in COCO_KEYS},
        "max_abs_diff": max(diffs.values()),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": __import__("os").cpu_count(),
        },
    }
    write_json(args.out, result)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

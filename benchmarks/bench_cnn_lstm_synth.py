"""CNN-LSTM on `vlgen data synth` data: does it learn (BLEU-4 before/after), and what does the feature cache save.

    .venv/bin/python benchmarks/bench_cnn_lstm_synth.py [--n 600] [--epochs 10] [--cache-n 334] [--out PATH]

Part 1 (learning): `synth_dataset(n, seed, image_size=64)`; train `vlgen.demo.CAPTIONER_RECIPE` (tiny encoder
trained from scratch, attention, 64 px) with `train_captioner`; caption the held-out test split greedily with
the untrained model (the same recipe and seed, no step taken) and with the best checkpoint; score BLEU-4 with
`compute_caption_metrics(..., metrics="coco")`. Records wall time of training and of each scoring.
Part 2 (feature cache): a frozen, randomly initialised `--cache-encoder` (resnet50) at 224 px on ~200 training
images (`--cache-n` images, 60% train), 2 epochs, no validation: `cache_features=False`, then `True` with an empty
`cache_dir` (computes the features), then `True` again (reads them). Per run: set-up (model build + feature
extraction/reading, i.e. up to the first step) and each epoch's time; mid-run checkpoints are off (they would
add the save of the frozen encoder's weights to the next epoch), the final model save is in "total" only.
Prints tables, writes JSON (default benchmarks/results/bench_cnn_lstm_synth.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def _timed_trainer_cls():
    from vlgen.captioning.trainer import CaptionTrainer

    class TimedTrainer(CaptionTrainer):
        """Marks the clock after feature set-up and at the end of every epoch (before validation)."""

        marks: list[tuple[str, float]]

        def _features(self, records, what):
            feats = super()._features(records, what)
            if what == "train":
                self.marks.append(("setup", time.perf_counter()))
            return feats

        def _end_of_epoch(self, epoch, state, raw_model):
            self.marks.append((f"epoch{epoch + 1}", time.perf_counter()))
            stop = super()._end_of_epoch(epoch, state, raw_model)
            self.marks.append((f"validation{epoch + 1}", time.perf_counter()))
            return stop

    return TimedTrainer


def timed_train(cfg) -> dict[str, float]:
    """`CaptionTrainer(cfg).train()`; seconds for set-up, each epoch (training steps only) and in total."""
    trainer = _timed_trainer_cls()(cfg)
    trainer.marks = [("start", time.perf_counter())]
    trainer.train()
    end = time.perf_counter()
    out: dict[str, float] = {}
    for (_, t0), (name, t1) in zip(trainer.marks, trainer.marks[1:], strict=False):
        if not name.startswith("validation"):
            out[name] = t1 - t0
    out["total"] = end - trainer.marks[0][1]
    return out


def caption_split(captioner, records, batch_size: int = 64) -> list[str]:
    from vlgen.data import load_image

    preds: list[str] = []
    for i in range(0, len(records), batch_size):
        images = [load_image(r.path) for r in records[i : i + batch_size]]
        preds += captioner.generate(images, num_beams=1, max_new_tokens=30)
    return preds


def learning(work: Path, n: int, epochs: int, seed: int) -> dict:
    import torch

    from vlgen.captioning.registry import load_captioner
    from vlgen.captioning.train_config import CaptionTrainConfig
    from vlgen.captioning.trainer import build_captioner
    from vlgen.data import load_records
    from vlgen.data.synth import synth_dataset
    from vlgen.demo import CAPTIONER_RECIPE
    from vlgen.metrics import compute_caption_metrics

    data = work / "synth64"
    synth_dataset(data, n, seed=seed, image_size=64, progress=False)
    recipe = {**CAPTIONER_RECIPE, "epochs": epochs, "seed": seed}
    cfg = CaptionTrainConfig(**recipe, data=str(data), out=str(work / "run"))
    test = load_records(data, split="test")
    refs = [r.captions for r in test]

    t = time.perf_counter()
    times = timed_train(cfg)
    train_s = time.perf_counter() - t
    torch.manual_seed(seed)
    untrained = build_captioner(cfg, load_records(data, split="train"))  # same recipe and seed, no step
    result = {"n_images": n, "splits": {s: len(load_records(data, split=s)) for s in ("train", "validation", "test")},
              "epochs": epochs, "recipe": CAPTIONER_RECIPE, "train_seconds": train_s, "train_times": times}  # fmt: skip
    for name, cap in (("untrained", untrained), ("trained", load_captioner(work / "run" / "best"))):
        t = time.perf_counter()
        preds = caption_split(cap, test)
        caption_s = time.perf_counter() - t
        scores = compute_caption_metrics(preds, refs, metrics="coco")
        result[name] = {
            "BLEU-4": float(scores.corpus["BLEU-4"]),
            "CIDEr": float(scores.corpus.get("CIDEr") or 0.0),
            "caption_seconds": caption_s,
            "examples": [{"prediction": p, "reference": r[0]} for p, r in list(zip(preds, refs, strict=True))[:3]],
        }
    return result


def feature_cache(work: Path, n: int, encoder: str, seed: int) -> dict:
    from vlgen.captioning.train_config import CaptionTrainConfig
    from vlgen.data import load_records
    from vlgen.data.synth import synth_dataset

    data = work / "synth224"
    synth_dataset(data, n, seed=seed, image_size=224, progress=False)
    cache_dir = work / "feature-cache"
    base = dict(encoder=encoder, encoder_weights="none", freeze_encoder=True, attention=False, image_size=224,
                epochs=2, validation_split=None, seed=seed, data=str(data), cache_dir=str(cache_dir),
                checkpointing_steps=10**9)  # fmt: skip
    runs = {}
    for name, cache in (("no_cache", False), ("cache_cold", True), ("cache_warm", True)):
        cfg = CaptionTrainConfig(**base, cache_features=cache, out=str(work / f"run-{name}"))
        runs[name] = timed_train(cfg)
        print(f"  {name}: " + ", ".join(f"{k} {v:.1f}s" for k, v in runs[name].items()), flush=True)
    return {"encoder": encoder, "image_size": 224, "train_images": len(load_records(data, split="train")), "runs": runs}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="synth images for the learning run (60%% train)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--cache-n", type=int, default=334, help="synth images for the cache timing (60%% train)")
    ap.add_argument("--cache-encoder", default="resnet50")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", choices=["learning", "cache"], default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_cnn_lstm_synth.json")
    args = ap.parse_args(argv)

    import torch

    result: dict = {"versions": {"torch": torch.__version__, "python": platform.python_version()},
                    "threads": torch.get_num_threads(), "loadavg_1min_start": os.getloadavg()[0]}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        if args.skip != "learning":
            result["learning"] = learning(Path(tmp), args.n, args.epochs, args.seed)
        if args.skip != "cache":
            result["feature_cache"] = feature_cache(Path(tmp), args.cache_n, args.cache_encoder, args.seed)
    result["loadavg_1min_end"] = os.getloadavg()[0]
    _print_tables(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    tmp_out.replace(args.out)
    print(f"wrote {args.out}")
    return result


def _print_tables(r: dict) -> None:
    if "learning" in r:
        lr = r["learning"]
        print(f"\nCNN-LSTM from scratch on synth ({lr['splits']}), {lr['epochs']} epochs, "
              f"train {lr['train_seconds']:.0f} s; test split, greedy:")  # fmt: skip
        print(f"{'model':<11}{'BLEU-4':>8}{'CIDEr':>8}{'caption s':>11}")
        for k in ("untrained", "trained"):
            print(f"{k:<11}{lr[k]['BLEU-4']:>8.3f}{lr[k]['CIDEr']:>8.3f}{lr[k]['caption_seconds']:>11.1f}")
    if "feature_cache" in r:
        fc = r["feature_cache"]
        print(f"\nfeature cache: frozen {fc['encoder']} (random weights) at 224 px, {fc['train_images']} train "
              "images, 2 epochs (s)")  # fmt: skip
        print(f"{'run':<12}{'set-up':>8}{'epoch 1':>9}{'epoch 2':>9}{'total':>8}")
        for k, v in fc["runs"].items():
            print(f"{k:<12}{v['setup']:>8.1f}{v['epoch1']:>9.1f}{v['epoch2']:>9.1f}{v['total']:>8.1f}")


if __name__ == "__main__":
    main()

"""One trainer for every captioner family, on Accelerate.

The loop is written out rather than hidden in `transformers.Trainer` because it must resume *exactly*:
the data order of epoch e is a permutation seeded by (seed, e), the position inside the epoch is saved
with each checkpoint, and so are the optimiser, scheduler and every RNG stream. A run killed with SIGKILL
and resumed from its last checkpoint therefore ends with the same weights, bit for bit on CPU, as a run
that was never interrupted (tests/captioning/test_trainer.py kills one to check).

Steps count optimiser updates. With N processes (`accelerate launch`, or `torchrun` on CPU), a global batch
of train_batch_size * N samples is split N ways; gradients are averaged by DDP. The loop itself (DataLoader,
accumulation, checkpoints, history, early stopping) is vlgen.training.loop, shared with `train lora`; this
module keeps what is particular to captioning: samples, model, validation and the best-model choice.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlgen.captioning.base import Captioner
from vlgen.captioning.train_config import RESUME_MAY_DIFFER, RESUME_PATH_KEYS, CaptionTrainConfig
from vlgen.checkpointing import list_checkpoints
from vlgen.data.images import load_image
from vlgen.data.records import Record, load_records
from vlgen.errors import ConfigError
from vlgen.fileio import atomic_directory, check_output_dir, write_json, write_jsonl
from vlgen.report.html import format_number
from vlgen.training.loop import (
    LoopSettings,
    TrainingLoop,
    TrainingTask,
    main_process_log,
    make_accelerator,
    open_run,
    save_run_config,
    write_history,
)
from vlgen.training.schedules import build_scheduler as build_lr_scheduler
from vlgen.training.schedules import ignored_warmup, restarts_for_period


def tensorboard_available() -> bool:
    """What Accelerate's tensorboard tracker needs (either package). Without one it would silently log nothing."""
    import importlib.util

    return any(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorboardX"))


def check_config(cfg: CaptionTrainConfig) -> None:
    """Fail before any work starts, naming the option and value."""
    if not cfg.data:
        raise ConfigError("--data is required: an imagefolder dataset directory")
    if not Path(cfg.data).is_dir():
        raise ConfigError(f"--data {cfg.data}: no such directory")
    if not cfg.out:
        raise ConfigError("--out is required")
    for name in ("epochs", "train_batch_size", "eval_batch_size", "gradient_accumulation_steps", "max_length"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    if cfg.learning_rate <= 0:
        raise ConfigError(f"--learning-rate must be positive, got {cfg.learning_rate}")
    if cfg.checkpointing_steps is not None and cfg.checkpointing_steps < 1:
        raise ConfigError(f"--checkpointing-steps must be at least 1, got {cfg.checkpointing_steps}")
    # What is only used at the first validation or after the last step is checked here too: a run must
    # not train for hours and then fail on an option that was wrong from the start.
    for name in ("num_beams", "max_new_tokens", "restart_epochs", "max_train_steps", "early_stopping_patience"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if cfg.lr_warmup_steps < 0:
        raise ConfigError(f"--lr-warmup-steps must be 0 or more, got {cfg.lr_warmup_steps}")
    parts = cfg.metric_for_best_model.split("+")
    if cfg.metric_for_best_model != "loss" and not all(p in VALIDATION_METRICS for p in parts):
        bad = next(p for p in parts if p not in VALIDATION_METRICS)
        raise ConfigError(
            f"--metric-for-best-model {cfg.metric_for_best_model}: {bad!r} is not a validation metric; use loss, "
            f"one of {', '.join(VALIDATION_METRICS)}, or a sum such as CIDEr+BLEU-4"
        )
    if cfg.mixed_precision == "fp16" and (cfg.cpu or not torch.cuda.is_available()):
        raise ConfigError("--mixed-precision fp16 needs a CUDA GPU; use bf16 or no on CPU")
    if cfg.report_to == "tensorboard" and not tensorboard_available():
        raise ConfigError("--report-to tensorboard needs the tensorboard package: pip install tensorboard")
    check_output_dir(cfg.out, "--out")
    from vlgen.captioning.registry import check_trainable

    check_trainable(cfg.model)  # a Qwen2-VL id fails here, naming what trains - not after loading 7B weights


def text_position_limit(captioner: Captioner) -> int | None:
    """How many token positions the captioner's text decoder has (None: no fixed limit, e.g. the CNN-LSTM).

    BLIP: text_config.max_position_embeddings; ViT-GPT2: decoder.n_positions (GPT-2's name for the same).
    """
    config = getattr(captioner.model, "config", None)
    for part in (getattr(config, "text_config", None), getattr(config, "decoder", None)):
        for name in ("max_position_embeddings", "n_positions"):
            value = getattr(part, name, None)
            if isinstance(value, int):
                return value
    return None


def check_text_lengths(cfg: CaptionTrainConfig, captioner: Captioner) -> None:
    """The recipe's lengths against the model, before the first step (not at the first validation, after an
    epoch of training): training sequences are --max-length tokens, and decoding starts from one start token."""
    limit = text_position_limit(captioner)
    if limit is None:
        return
    name = f"{captioner.family} model {cfg.model}"
    if cfg.max_length > limit:
        raise ConfigError(
            f"--max-length {cfg.max_length} is over the limit of the {name}: {limit} text positions; "
            f"pass --max-length {limit} or less"
        )
    if cfg.validation_split and cfg.max_new_tokens + 1 > limit:
        raise ConfigError(
            f"--max-new-tokens {cfg.max_new_tokens} is over the limit of the {name}: {limit} text positions, "
            f"one of them the start token; pass --max-new-tokens {limit - 1} or less"
        )


# ----------------------------------------------------------------------------------------------- data
@dataclass
class Sample:
    image: int  # index into the image list
    caption: str


def training_samples(records: Sequence[Record]) -> list[Sample]:
    """One sample per (image, reference caption): Flickr8k's 5 captions per image give 5 samples."""
    return [Sample(i, c) for i, r in enumerate(records) for c in r.captions]


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The sample order of one epoch: a permutation seeded by (seed, epoch), cut into global batches."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def build_scheduler(cfg: CaptionTrainConfig, optimizer, total_steps: int, steps_per_epoch: int):
    """transformers' schedule `cfg.lr_scheduler`; cosine_with_restarts restarts every --restart-epochs epochs."""
    num_cycles = restarts_for_period(cfg.restart_epochs * steps_per_epoch, total_steps, cfg.lr_warmup_steps)
    return build_lr_scheduler(
        cfg.lr_scheduler, optimizer, warmup_steps=cfg.lr_warmup_steps, total_steps=total_steps, num_cycles=num_cycles
    )


# ----------------------------------------------------------------------------------------------- model
def build_captioner(cfg: CaptionTrainConfig, train_records: Sequence[Record]) -> Captioner:
    from vlgen.captioning.registry import create_captioner, load_captioner

    if cfg.model == "cnn-lstm":
        return create_captioner(
            "cnn-lstm",
            captions=[c for r in train_records for c in r.captions],
            min_count=cfg.min_count,
            **asdict(replace(cfg.cnn_lstm, max_length=cfg.max_length)),  # vocab_size: from the vocabulary
        )
    return load_captioner(cfg.model)


# The caption metrics computed at each validation (pycocoevalcap's), the names --metric-for-best-model takes.
VALIDATION_METRICS = ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


def validation_metric(predictions: list[str], references: list[list[str]], name: str) -> dict[str, float]:
    """The metrics `name` needs ("CIDEr+BLEU-4": pycocoevalcap's, as BLIP/LAVIS select checkpoints).

    Returns {} for "loss", or when Java (pycocoevalcap's PTB tokenizer) is missing - then the best model
    is chosen by validation loss, and the trainer says so.
    """
    if name == "loss":
        return {}
    from vlgen.metrics import compute_caption_metrics
    from vlgen.metrics.coco import JavaNotFoundError

    try:
        scores = compute_caption_metrics(predictions, references, metrics="coco")
    except JavaNotFoundError:
        return {}
    return {k: float(scores.corpus[k]) for k in VALIDATION_METRICS if scores.corpus.get(k) is not None}


def best_score(metrics: dict[str, float], name: str, val_loss: float | None) -> float | None:
    """Higher is better: '-loss' for loss, the sum for 'A+B'."""
    if name == "loss":
        return None if val_loss is None else -val_loss
    parts = name.split("+")
    if not all(p in metrics for p in parts):
        return None if val_loss is None else -val_loss  # metric unavailable (e.g. no Java): fall back to loss
    return float(sum(metrics[p] for p in parts))


# ----------------------------------------------------------------------------------------------- trainer
class _Wrapped:
    """The captioner's model as its own methods see it (attributes such as `dtype` and `config` of the model),
    whose calls go through accelerate's wrapper (DDP): the forward of `Captioner.loss` must, or the processes'
    gradients are never averaged and each process trains a model of its own."""

    def __init__(self, wrapped: torch.nn.Module, raw: torch.nn.Module) -> None:
        self._wrapped, self._raw = wrapped, raw

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapped(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class _CaptionTask(TrainingTask):
    """What is particular to captioning in the shared loop: samples, their batches, the captioner's loss."""

    def __init__(
        self,
        trainer: CaptionTrainer,
        samples: list[Sample],
        feats: torch.Tensor | None,
        global_batch: int,
        model: torch.nn.Module,
    ):
        self.trainer, self.samples, self.feats, self.global_batch = trainer, samples, feats, global_batch
        self.model = model  # as accelerate prepared it

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        return epoch_batches(len(self.samples), self.global_batch, self.trainer.cfg.seed, epoch)

    def collate(self, ids: list[int], epoch: int, b: int) -> dict:
        """Decodes the images (in a DataLoader worker with --num-workers), or takes their cached features."""
        cap, cfg = self.trainer.captioner, self.trainer.cfg
        caps = [self.samples[i].caption for i in ids]
        imgs = [self.samples[i].image for i in ids]
        if self.feats is not None:
            return cap.collate_features(self.feats[imgs], caps, cfg.max_length)
        return cap.collate([load_image(self.trainer.train_records[i].path) for i in imgs], caps, cfg.max_length)

    def loss(self, batch: dict, epoch: int, b: int) -> torch.Tensor:
        cap = self.trainer.captioner
        if self.model is cap.model:  # one process: nothing wraps it
            return cap.loss(batch)
        raw = cap.model
        cap.model = _Wrapped(self.model, raw)
        try:
            return cap.loss(batch)
        finally:
            cap.model = raw

    def after_step(self, step: int, row: dict[str, Any], state: dict[str, Any]) -> None:
        self.accelerator.log({"train/loss": row["train_loss"], "train/lr": row["lr"]}, step=step)

    def end_of_epoch(self, epoch: int, state: dict[str, Any]) -> bool:
        return self.trainer._end_of_epoch(epoch, state)


class CaptionTrainer:
    def __init__(self, cfg: CaptionTrainConfig) -> None:
        check_config(cfg)
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.ckpt_root = self.out / "checkpoints"
        self.accelerator = make_accelerator(
            cpu=cfg.cpu,
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            log_with="tensorboard" if cfg.report_to == "tensorboard" else None,
            project_dir=self.out,
            find_unused_parameters=not cfg.gradient_checkpointing,
        )
        self.continues_a_run = open_run(
            self.accelerator, cfg, self.out, option="--out", may_differ=RESUME_MAY_DIFFER, path_keys=RESUME_PATH_KEYS
        )
        self.train_records = load_records(cfg.data, split=cfg.train_split, caption_column=cfg.caption_column)
        self.val_records = (
            load_records(cfg.data, split=cfg.validation_split, caption_column=cfg.caption_column)
            if cfg.validation_split
            else []
        )

    # -- helpers
    def _log(self, msg: str) -> None:
        main_process_log(self.accelerator)(msg)

    def _features(self, records: Sequence[Record], what: str) -> torch.Tensor | None:
        cap = self.captioner
        if not (self.cfg.cache_features and getattr(cap, "supports_feature_cache", False)):
            return None
        from vlgen.captioning.feature_cache import cached_features

        paths = [r.path for r in records]
        feats, hit = cached_features(
            paths,
            cap.feature_cache_key(),
            lambda batch: cap.encode_images([load_image(p) for p in batch]),
            batch_size=self.cfg.eval_batch_size,
            cache_dir=self.cfg.cache_dir,
            description=f"caching {what} features",
        )
        self._log(f"{what} features: {'read from cache' if hit else 'computed and cached'} {tuple(feats.shape)}")
        return feats

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict[str, Any]:
        """Validation loss (first reference of each image) and the caption metrics on greedy/beam output.

        `epoch` counts from 1, as in history.csv (it is written into validation_predictions.jsonl)."""
        cap, cfg = self.captioner, self.cfg
        if not self.val_records:
            return {}
        cap.model.eval()
        losses, preds = [], []
        for i in range(0, len(self.val_records), cfg.eval_batch_size):
            recs = self.val_records[i : i + cfg.eval_batch_size]
            caps = [r.captions[0] for r in recs]
            if self.val_feats is not None:
                f = self.val_feats[i : i + len(recs)].to(cap.device)
                batch = cap.collate_features(f, caps, cfg.max_length)
                preds += cap.generate_from_features(f, num_beams=cfg.num_beams, max_new_tokens=cfg.max_new_tokens)
            else:
                images = [load_image(r.path) for r in recs]
                batch = cap.collate(images, caps, cfg.max_length)
                preds += cap.generate(images, num_beams=cfg.num_beams, max_new_tokens=cfg.max_new_tokens)
            batch = {k: v.to(cap.device) for k, v in batch.items()}
            with self.accelerator.autocast():
                losses.append(cap.loss(batch).item() * len(recs))
        cap.model.train()
        val_loss = sum(losses) / len(self.val_records)
        metrics = validation_metric(preds, [r.captions for r in self.val_records], cfg.metric_for_best_model)
        write_jsonl(
            self.out / "validation_predictions.jsonl",
            [
                {"file_name": r.file_name, "prediction": p, "references": r.captions, "epoch": epoch}
                for r, p in zip(self.val_records, preds, strict=True)
            ],
        )
        return {"val_loss": val_loss, **metrics}

    # -- the loop
    def train(self) -> dict[str, Any]:
        cfg, acc = self.cfg, self.accelerator
        t_start = time.perf_counter()
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.captioner = build_captioner(cfg, self.train_records)
        cap = self.captioner
        check_text_lengths(cfg, cap)
        cap.to(acc.device)
        if cfg.gradient_checkpointing and not cap.enable_gradient_checkpointing():
            self._log(f"[yellow]gradient checkpointing is not supported by {cap.family}; training without it[/]")
        self.out.mkdir(parents=True, exist_ok=True)
        save_run_config(acc, cfg, self.out)

        samples = training_samples(self.train_records)
        train_feats = self._features(self.train_records, "train")
        self.val_feats = self._features(self.val_records, "validation") if self.val_records else None

        global_batch = cfg.train_batch_size * acc.num_processes
        n_batches = math.ceil(len(samples) / global_batch)
        steps_per_epoch = math.ceil(n_batches / cfg.gradient_accumulation_steps)
        total_steps = cfg.max_train_steps or cfg.epochs * steps_per_epoch

        params = cap.trainable_parameters()
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]  # biases and norms: no weight decay (as in BERT/BLIP)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.learning_rate,
        )
        scheduler = build_scheduler(cfg, optimizer, total_steps, steps_per_epoch)
        if note := ignored_warmup(cfg.lr_scheduler, cfg.lr_warmup_steps):
            self._log(f"[yellow]{note}[/]")
        model, optimizer = acc.prepare(cap.model, optimizer)
        raw_model = acc.unwrap_model(model)

        loop = TrainingLoop(
            acc,
            LoopSettings(
                seed=cfg.seed,
                gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                max_grad_norm=cfg.max_grad_norm,
                checkpointing_steps=cfg.checkpointing_steps,
                checkpoints_total_limit=cfg.checkpoints_total_limit,
                resume_from_checkpoint=cfg.resume_from_checkpoint,
                num_workers=cfg.num_workers,
            ),
            ckpt_root=self.ckpt_root,
            models=[model],
            checkpoint_module=raw_model,
            params=params,
            optimizer=optimizer,
            scheduler=scheduler,
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
            log=self._log,
        )
        state = loop.new_state(best_score=None, best_step=None, epochs_without_improvement=0)
        state = loop.resume(state, self.continues_a_run)
        if cfg.report_to == "tensorboard":
            acc.init_trackers("vlgen-caption")
        state = loop.run(_CaptionTask(self, samples, train_feats, global_batch, model), state)

        acc.wait_for_everyone()
        summary: dict[str, Any] = {}
        if acc.is_main_process:
            self._save_model("last")
            if not (self.out / "best").exists():  # no validation split: the last model is the best we know
                self._save_model("best")
            write_history(self.out, state["history"])
            summary = {
                "steps": state["global_step"],
                "epochs": state["epoch"] + (1 if state["batch_in_epoch"] else 0),
                "best_step": state["best_step"],
                "best_score": state["best_score"],
                "metric_for_best_model": cfg.metric_for_best_model,
                "seconds": round(time.perf_counter() - t_start, 2),
                "final_train_loss": next(
                    (h["train_loss"] for h in reversed(state["history"]) if "train_loss" in h), None
                ),
                "last_validation": next((h for h in reversed(state["history"]) if "val_loss" in h), None),
                "num_processes": acc.num_processes,
            }
            write_json(self.out / "train_summary.json", summary)
        acc.end_training()
        return summary

    def _end_of_epoch(self, epoch: int, state: dict) -> bool:
        """Validate, keep the best model, decide on early stopping. Returns True to stop."""
        cfg = self.cfg
        if not self.val_records:
            return False
        if not self.accelerator.is_main_process:
            return False
        val = self.evaluate(epoch + 1)
        row = {"step": state["global_step"], "epoch": epoch + 1, **val}
        state["history"].append(row)
        self.accelerator.log({f"val/{k}": v for k, v in val.items()}, step=state["global_step"])
        score = best_score(val, cfg.metric_for_best_model, val.get("val_loss"))
        shown = ", ".join(f"{k} {format_number(v)}" for k, v in val.items())
        self._log(f"epoch {epoch + 1}: {shown}")
        if score is not None and (state["best_score"] is None or score > state["best_score"]):
            state["best_score"], state["best_step"] = score, state["global_step"]
            state["epochs_without_improvement"] = 0
            self._save_model("best")
        else:
            state["epochs_without_improvement"] += 1
        if self.accelerator.is_main_process:
            write_history(self.out, state["history"])
        patience = cfg.early_stopping_patience
        if patience is not None and state["epochs_without_improvement"] >= patience:
            self._log(f"early stopping: no improvement of {cfg.metric_for_best_model} for {patience} epochs")
            return True
        return False

    def _save_model(self, name: str) -> Path:
        """Save the captioner to OUT/name atomically: a crash leaves the complete old or new copy."""
        with atomic_directory(self.out / name) as tmp:
            self.captioner.save(tmp)
        return self.out / name


def train_captioner(cfg: CaptionTrainConfig) -> dict[str, Any]:
    """Library entry point behind `vlgen train caption`: train or fine-tune the captioner `cfg` describes.

    Writes `cfg.out` as the command does (`best/`, `last/` - load either with `load_captioner` -, `history.csv`,
    `curves.png`, `validation_predictions.jsonl`, `config.yaml`, `train_summary.json`) and returns the summary
    (`steps`, `epochs`, `best_step`, `best_score`, `final_train_loss`, ...; empty on processes other than 0).

    Example::

        import vlgen

        cfg = vlgen.CaptionTrainConfig(
            model="Salesforce/blip-image-captioning-base", data="data/ddb", out="runs/blip",
            epochs=3, learning_rate=1e-5, train_batch_size=8, max_length=40,
        )
        summary = vlgen.train_captioner(cfg)
        print(summary["steps"], summary["best_score"])
        captioner = vlgen.load_captioner("runs/blip/best")
    """
    return CaptionTrainer(cfg).train()


__all__ = ["CaptionTrainConfig", "CaptionTrainer", "list_checkpoints", "train_captioner"]

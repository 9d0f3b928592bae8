"""`CaptionTrainConfig`: the options of `vlgen train caption` (kept free of heavy imports for the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vlgen.captioning.cnn_lstm_config import CnnLstmConfig
from vlgen.config import FLAT, flat_options

# transformers' / diffusers' schedule names, with their meaning (vlgen.training.schedules): `constant` has no
# warm-up, `constant_with_warmup` has one, `cosine_with_restarts` warms up too and restarts every
# --restart-epochs. Hyphens work too (the README's "cosine-with-restarts"); "cosine_restarts", this command's
# earlier name, stays accepted. All are stored with diffusers' spelling.
SchedulerName = Literal[
    "constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts",
    "constant-with-warmup", "cosine-with-restarts", "cosine_restarts",
]  # fmt: skip
SCHEDULER_ALIASES = {"cosine_restarts": "cosine_with_restarts"}
# What `vlgen train caption --model` trains (a family name, or a hub id / directory of one of these). Other
# vision-language checkpoints (Qwen2-VL, SmolVLM ...) caption but are refused for training, naming these.
TRAINABLE_FAMILIES = ("cnn-lstm", "blip", "vit-gpt2", "florence-2")


@flat_options
@dataclass
class CaptionTrainConfig:
    """`vlgen train caption` options. Defaults suit the CNN-LSTM; shipped yaml recipes set the others.

    Every field is the CLI option of the same name (`learning_rate` <-> `--learning-rate`); the new CNN-LSTM's
    hyper-parameters are nested in `cnn_lstm` (a `CnnLstmConfig`) but are options by their own names too
    (`--encoder`, `encoder:` in a yaml, `CaptionTrainConfig(encoder="tiny")`, `cfg.encoder`). Train with
    `train_captioner(cfg)`, load a recipe with `resolve_config(CaptionTrainConfig, "blip-diffusiondb", {...})`.

    Example::

        import vlgen

        cfg = vlgen.CaptionTrainConfig(model="blip", data="data/ddb", out="runs/blip", epochs=3, learning_rate=1e-5)
    """

    model: str = "cnn-lstm"  # a TRAINABLE_FAMILIES name (new CNN-LSTM / published checkpoint), hub id or directory
    data: str = ""
    out: str = ""
    caption_column: str = "text"
    train_split: str = "train"
    validation_split: str | None = "validation"
    epochs: int = 10
    max_train_steps: int | None = None
    train_batch_size: int = 32
    eval_batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    lr_scheduler: SchedulerName = "constant"
    lr_warmup_steps: int = 0
    restart_epochs: int = 1  # period of cosine_with_restarts, in epochs (after the warm-up)
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = 1.0
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False
    max_length: int = 40
    seed: int = 42
    checkpointing_steps: int | None = None  # None: one checkpoint at the end of every epoch
    checkpoints_total_limit: int | None = 2
    resume_from_checkpoint: str | None = None  # "latest" or a checkpoint directory
    overwrite_output_dir: bool = False  # clear an --out that holds another run (refused otherwise)
    early_stopping_patience: int | None = None  # epochs without improvement of the best metric
    metric_for_best_model: str = "CIDEr+BLEU-4"  # or "loss", or any single metric name
    num_beams: int = 1  # decoding for the validation metric
    max_new_tokens: int = 30
    report_to: Literal["none", "tensorboard"] = "none"  # tensorboard: pip install 'vlgen[tensorboard]'
    num_workers: int = 0
    cpu: bool = False  # force CPU even when a GPU is present
    # New CNN-LSTM only (ignored when fine-tuning a checkpoint). The model's hyper-parameters (encoder,
    # encoder_weights, freeze_encoder, attention, image_size, embed_dim, hidden_dim, attention_dim, dropout,
    # alpha_c) are declared once, in CnnLstmConfig - what its config.json saves (issue 16 item 4).
    cnn_lstm: CnnLstmConfig = field(default_factory=CnnLstmConfig, metadata=FLAT)
    # Not model settings, so not in CnnLstmConfig: min_count builds the vocabulary from the training captions
    # (saved as vocab.json, not config.json); the feature cache only makes training faster.
    min_count: int = 1
    cache_features: bool = True
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        name = self.lr_scheduler.replace("-", "_")
        self.lr_scheduler = SCHEDULER_ALIASES.get(name, name)  # type: ignore[assignment]


# Options that may change when a run is resumed (`--resume-from-checkpoint`): where and how long it runs, what
# it logs and keeps - not what is learnt. A longer (or shorter) --epochs / --max-train-steps extends the run:
# the learning-rate schedule is recomputed for the new length. Every other option must equal the saved
# config.yaml of the run being resumed, or the trainer refuses, naming the keys.
RESUME_MAY_DIFFER = frozenset({
    "resume_from_checkpoint", "overwrite_output_dir", "out", "epochs", "max_train_steps", "checkpointing_steps",
    "checkpoints_total_limit", "early_stopping_patience", "report_to", "num_workers", "cpu", "cache_features",
    "cache_dir", "eval_batch_size",
})  # fmt: skip
RESUME_PATH_KEYS = frozenset({"data", "model"})

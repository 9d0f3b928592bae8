"""`CnnLstmConfig`: the CNN-LSTM's hyper-parameters, declared once (issue 16 item 4).

It lives apart from the model (`cnn_lstm.py`, which re-exports it) only because it must import without torch:
`CaptionTrainConfig` nests it (`cfg.cnn_lstm`), and the CLI imports that to build `vlgen train caption`'s
options. The same dataclass is the checkpoint's config.json (`asdict`, with `model_type`).

Fields with `metadata={"option": False}` are not options of a config that nests this one (see
vlgen.config `flat`): the trainer or the model sets them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vlgen.errors import ConfigError

MODEL_TYPE = "vlgen-cnn-lstm"
ENCODERS = ("resnet50", "densenet201", "tiny")
NOT_AN_OPTION = {"option": False}


@dataclass
class CnnLstmConfig:
    encoder: str = "resnet50"
    # torchvision weights to start from: "default" (ImageNet, see cnn_lstm.ENCODER_WEIGHTS) or "none" (random init).
    encoder_weights: str = "default"
    freeze_encoder: bool = True
    attention: bool = False
    image_size: int = 224
    embed_dim: int = 256
    hidden_dim: int = 512
    attention_dim: int = 256
    dropout: float = 0.3
    # Weight of the doubly stochastic attention regulariser (lambda in Xu et al. 2015).
    alpha_c: float = 1.0
    # The trainer copies `CaptionTrainConfig.max_length` here (one setting for every family).
    max_length: int = field(default=40, metadata=NOT_AN_OPTION)
    vocab_size: int = field(default=0, metadata=NOT_AN_OPTION)  # set from the vocabulary
    # The tiny encoder's channels: sized by tests and build_tiny_cnn_lstm, not by a training recipe.
    tiny_channels: list[int] = field(default_factory=lambda: [32, 64, 128], metadata=NOT_AN_OPTION)
    model_type: str = field(default=MODEL_TYPE, metadata=NOT_AN_OPTION)

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ConfigError(f"encoder {self.encoder!r} is not one of {', '.join(ENCODERS)}")
        if self.encoder_weights not in ("default", "none"):
            raise ConfigError(f"encoder_weights must be 'default' or 'none', got {self.encoder_weights!r}")
        if self.image_size < 16:
            raise ConfigError(f"image_size must be at least 16, got {self.image_size}")

"""`create_captioner(name, **kw)` / `load_captioner(ref)`: one entry point for every captioner family.

A reference is a family name (`cnn-lstm`, `blip`, `vit-gpt2`: the family's published checkpoint), a hub
id, or a local directory; the family of a directory is read from its `config.json` (`model_type`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vlgen.captioning.base import Captioner
from vlgen.captioning.blip import BlipCaptioner
from vlgen.captioning.cnn_lstm import MODEL_TYPE as CNN_LSTM_MODEL_TYPE
from vlgen.captioning.cnn_lstm import CnnLstmCaptioner
from vlgen.captioning.vit_gpt2 import VitGpt2Captioner
from vlgen.errors import ConfigError, ModelNotAvailableError
from vlgen.hub import DEFAULT_MODELS, resolve_model

CAPTIONERS: dict[str, type[Captioner]] = {
    "cnn-lstm": CnnLstmCaptioner,
    "blip": BlipCaptioner,
    "vit-gpt2": VitGpt2Captioner,
}
# config.json model_type -> family
_MODEL_TYPES = {CNN_LSTM_MODEL_TYPE: "cnn-lstm", "blip": "blip", "vision-encoder-decoder": "vit-gpt2"}


def family_of(ref: str | Path) -> str:
    """The captioner family of a name, hub id or directory."""
    ref = str(ref)
    if ref in CAPTIONERS:
        return ref
    for family, hub_id in DEFAULT_MODELS.items():
        if ref == hub_id and family in CAPTIONERS:
            return family
    path = resolve_model(ref, what="captioner").path
    cfg = path / "config.json"
    if not cfg.is_file():
        raise ModelNotAvailableError(f"captioner '{ref}': {cfg} is missing, so its family is unknown")
    try:
        model_type = json.loads(cfg.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelNotAvailableError(f"captioner '{ref}': {cfg} is not valid JSON ({e})") from None
    if model_type not in _MODEL_TYPES:
        raise ModelNotAvailableError(
            f"captioner '{ref}': model_type {model_type!r} is not a captioner vlgen knows "
            f"({', '.join(sorted(_MODEL_TYPES))})"
        )
    return _MODEL_TYPES[model_type]


def load_captioner(ref: str | Path, device: str | torch.device = "cpu") -> Captioner:
    """Load a pretrained/fine-tuned captioner: family name (its default checkpoint), hub id or directory."""
    family = family_of(ref)
    cls = CAPTIONERS[family]
    return cls.load(None if str(ref) == family else ref, device=device)


def create_captioner(name: str, **kwargs) -> Captioner:
    """Registry entry point: `create_captioner("cnn-lstm", captions=[...], encoder="resnet50")` builds a new
    CNN-LSTM; for the pretrained families (and any path/hub id) it loads, with `device=` accepted."""
    if name == "cnn-lstm":
        if "captions" not in kwargs:
            raise ConfigError("a new CNN-LSTM needs the training captions to build its vocabulary (captions=...)")
        return CnnLstmCaptioner.create(**kwargs)
    if kwargs.keys() - {"device"}:
        raise ConfigError(f"unexpected options for {name}: {', '.join(sorted(kwargs.keys() - {'device'}))}")
    return load_captioner(name, device=kwargs.get("device", "cpu"))

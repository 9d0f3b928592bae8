"""ViT-GPT2 captioner: `VisionEncoderDecoderModel` (ViT encoder, GPT-2 decoder with cross-attention),
default nlconnect/vit-gpt2-image-captioning.

GPT-2 has no pad token, so the checkpoint uses `<|endoftext|>` (50256) as bos, eos, pad and decoder start.
That makes the usual "mask pad tokens in labels" wrong: it would also mask the one eos the model must
learn to emit. `collate` therefore appends eos to each caption and pads the labels with -100 by length,
not by token id; the model shifts labels right with `decoder_start_token_id` itself.

Generation runs inside `vlgen.captioning.vit_gpt2_fast.fast_generation` (GPT-2's cross-attention on each image's
tokens, beams sharing them; the ViT in chunks on CPU; same captions as plain transformers, faster) unless the
captioner's `fast_path` is off: `VitGpt2Captioner.load(ref, fast_path=False)`, `load_captioner(ref,
fast_path=False)`, or `VLGEN_VIT_GPT2_FAST_PATH=0`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vlgen.captioning.base import Captioner, processor_input_size, strip_captions
from vlgen.captioning.inputs import ProcessorTransform
from vlgen.captioning.vit_gpt2_fast import fast_generation, fast_path_usable
from vlgen.errors import ConfigError
from vlgen.hub import DEFAULT_MODELS, resolve_model


class VitGpt2Captioner(Captioner):
    family = "vit-gpt2"

    def __init__(self, model, image_processor, tokenizer, fast_path: bool | None = None) -> None:
        self.model = model
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self._check_special_tokens()
        # None: $VLGEN_VIT_GPT2_FAST_PATH (unset: on). Off too when transformers' internals moved (with a warning).
        self.fast_path = fast_path_usable(fast_path)

    def _check_special_tokens(self) -> None:
        cfg = self.model.config
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise ConfigError("ViT-GPT2 tokenizer has no eos token")
        # Older checkpoints leave these unset on the top-level config; generate() and the loss need them.
        if cfg.decoder_start_token_id is None:
            cfg.decoder_start_token_id = cfg.decoder.bos_token_id if cfg.decoder.bos_token_id is not None else eos
        if cfg.pad_token_id is None:
            cfg.pad_token_id = eos
        if cfg.eos_token_id is None:
            cfg.eos_token_id = eos
        gen = self.model.generation_config
        for name in ("decoder_start_token_id", "pad_token_id", "eos_token_id"):
            if getattr(gen, name, None) is None:
                setattr(gen, name, getattr(cfg, name))

    @classmethod
    def load(
        cls,
        ref: str | Path | None = None,
        device: str | torch.device = "cpu",
        dtype=None,
        fast_path: bool | None = None,
    ) -> VitGpt2Captioner:
        """`fast_path=False`: `generate` is plain transformers' (see `vlgen.captioning.vit_gpt2_fast`); None: on
        unless `VLGEN_VIT_GPT2_FAST_PATH=0`."""
        from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

        resolved = resolve_model(ref or DEFAULT_MODELS["vit-gpt2"], what="ViT-GPT2 captioner")
        image_processor = AutoImageProcessor.from_pretrained(resolved.path)
        tokenizer = AutoTokenizer.from_pretrained(resolved.path)
        model = VisionEncoderDecoderModel.from_pretrained(resolved.path, dtype=dtype or torch.float32)
        return cls(model.to(device).eval(), image_processor, tokenizer, fast_path=fast_path)

    @property
    def input_size(self) -> tuple[int, int] | None:
        return processor_input_size(self.image_processor)  # (224, 224) for vit-gpt2-image-captioning

    def image_transform(self) -> ProcessorTransform:
        return ProcessorTransform(self.image_processor)  # the input workers' images -> pixel_values

    def _pixel_values(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        # (B, 3, 224, 224); a tensor: image_transform() made it already (vlgen.captioning.inputs)
        pv = images if isinstance(images, torch.Tensor) else self.image_transform()(images)
        return pv.to(self.device, dtype=self.model.dtype)

    @torch.no_grad()
    def generate(
        self, images: Sequence[Image.Image], num_beams: int = 1, max_new_tokens: int = 30, **generate_kwargs: Any
    ) -> list[str]:
        was_training = self.model.training
        self.model.eval()
        try:
            with fast_generation(self.model) if self.fast_path else nullcontext():
                ids = self.model.generate(
                    pixel_values=self._pixel_values(images),
                    num_beams=num_beams,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    **generate_kwargs,
                )
        finally:
            self.model.train(was_training)
        return strip_captions(self.tokenizer.batch_decode(ids, skip_special_tokens=True))

    def collate(self, images: Sequence[Image.Image], captions: Sequence[str], max_length: int) -> dict:
        eos = self.tokenizer.eos_token_id
        # Truncate to max_length - 1 so that every caption keeps its eos.
        ids = self.tokenizer(list(captions), truncation=True, max_length=max_length - 1).input_ids
        ids = [x + [eos] for x in ids]
        T = max(map(len, ids))
        labels = torch.full((len(ids), T), -100, dtype=torch.long)  # (B, T)
        for i, x in enumerate(ids):
            labels[i, : len(x)] = torch.tensor(x)
        pv = self.image_processor(images=list(images), return_tensors="pt").pixel_values
        return {"pixel_values": pv, "labels": labels}

    def loss(self, batch: dict) -> torch.Tensor:
        return self.model(pixel_values=batch["pixel_values"].to(self.model.dtype), labels=batch["labels"]).loss

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        self.model.save_pretrained(out)
        self.image_processor.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        return out

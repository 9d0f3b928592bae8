"""BLIP captioner: `BlipForConditionalGeneration` + `BlipProcessor`, default Salesforce/blip-image-captioning-base.

Training follows BLIP/LAVIS: the text decoder input starts with `[DEC]` (the config's
`text_config.bos_token_id`) instead of the tokenizer's `[CLS]`, ends with `[SEP]` (the eos BLIP's
`generate` stops at), and padding is ignored in the loss (-100). Training with `[CLS]` as the first
token - a common mistake in fine-tuning notebooks - teaches the model a prefix it never sees at
generation time. The text LM head shifts labels itself and applies BLIP's label smoothing of 0.1.

Generation runs inside `vlgen.captioning.blip_fast.fast_generation` (SDPA vision attention, cross-attention on
the image tokens; same captions as plain transformers, faster) unless the captioner's `fast_path` is off:
`BlipCaptioner.load(ref, fast_path=False)`, `load_captioner(ref, fast_path=False)`, or `VLGEN_BLIP_FAST_PATH=0`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vlgen.captioning.base import Captioner, processor_input_size, strip_captions
from vlgen.captioning.blip_fast import fast_generation, fast_path_usable
from vlgen.captioning.inputs import ProcessorTransform
from vlgen.hub import DEFAULT_MODELS, resolve_model


class BlipCaptioner(Captioner):
    family = "blip"

    def __init__(self, model, processor, fast_path: bool | None = None) -> None:
        self.model = model
        self.processor = processor
        # None: $VLGEN_BLIP_FAST_PATH (unset: on). Off too when transformers' internals moved (with a warning).
        self.fast_path = fast_path_usable(fast_path)

    @classmethod
    def load(
        cls,
        ref: str | Path | None = None,
        device: str | torch.device = "cpu",
        dtype=None,
        fast_path: bool | None = None,
    ) -> BlipCaptioner:
        """`fast_path=False`: `generate` is plain transformers' (see `vlgen.captioning.blip_fast`); None: on unless
        `VLGEN_BLIP_FAST_PATH=0`."""
        from transformers import BlipForConditionalGeneration, BlipProcessor

        resolved = resolve_model(ref or DEFAULT_MODELS["blip"], what="BLIP captioner")
        processor = BlipProcessor.from_pretrained(resolved.path)
        model = BlipForConditionalGeneration.from_pretrained(resolved.path, dtype=dtype or torch.float32)
        return cls(model.to(device).eval(), processor, fast_path=fast_path)

    @property
    def input_size(self) -> tuple[int, int] | None:
        return processor_input_size(self.processor.image_processor)  # (384, 384) for blip-base

    def image_transform(self) -> ProcessorTransform:
        return ProcessorTransform(self.processor.image_processor)  # the input workers' images -> pixel_values

    def _pixel_values(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        # (B, 3, S, S), S = the processor's size (384 for blip-base); a tensor: image_transform() made it already
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
        return strip_captions(self.processor.batch_decode(ids, skip_special_tokens=True))

    def collate(self, images: Sequence[Image.Image], captions: Sequence[str], max_length: int) -> dict:
        text = self.processor.tokenizer(
            list(captions), padding="longest", truncation=True, max_length=max_length, return_tensors="pt"
        )
        input_ids = text.input_ids.clone()  # (B, T): [CLS] w1 .. wn [SEP] [PAD]*
        input_ids[:, 0] = self.model.config.text_config.bos_token_id  # [DEC], as generate() starts
        labels = input_ids.masked_fill(text.attention_mask == 0, -100)
        pv = self.processor(images=list(images), return_tensors="pt").pixel_values
        return {"pixel_values": pv, "input_ids": input_ids, "attention_mask": text.attention_mask, "labels": labels}

    def loss(self, batch: dict) -> torch.Tensor:
        batch = {**batch, "pixel_values": batch["pixel_values"].to(self.model.dtype)}
        return self.model(**batch).loss

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        self.model.save_pretrained(out)
        self.processor.save_pretrained(out)
        return out

"""Vision-language captioners: any transformers image-text-to-text checkpoint (`AutoModelForImageTextToText`).

One family for the models people caption LoRA datasets with today - Florence-2 (the native-transformers
`florence-community/Florence-2-base`/`-large`), Qwen2-VL / Qwen2.5-VL / Qwen3-VL, SmolVLM (idefics3), BLIP-2,
LLaVA and its family (JoyCaption is a LLaVA checkpoint) - loaded by hub id or directory with `AutoProcessor`
and `AutoModelForImageTextToText`. The family of a checkpoint is read from its config.json `model_type`
(`is_vlm_model_type`); BLIP-1 (`blip`) and ViT-GPT2 (`vision-encoder-decoder`) keep their own families.

The prompt (`--caption-prompt`) is the instruction, or Florence-2's task token. Per model type a default
(`default_prompt`): Florence-2 `<CAPTION>` (`<DETAILED_CAPTION>` / `<MORE_DETAILED_CAPTION>` for longer ones),
BLIP-2 none (plain captioning), PaliGemma `caption en`, chat models "Describe this image in one sentence.".
A processor with a chat template gets the prompt through it (one user turn: the image, then the prompt; the
assistant turn opened), as the model was trained; one without gets the prompt as is.

Batching: decoder-only models are padded on the left, so every row's last prompt token sits at the end and
generation continues each row as it would alone - batched captions equal one-at-a-time captions
(tests/captioning/test_vlm.py). The prompt is cut from the output (decoder-only models return it), and a row
whose caption hit `max_new_tokens` without an end-of-sequence token is marked `"truncated": true`
(`caption_rows`).

Training (`vlgen train caption --model florence-2`, a Florence-2 hub id or directory): Florence-2 only, an
encoder-decoder fine-tuned as BLIP is - the encoder reads the image tokens and the prompt (the captioner's, default
`<CAPTION>`), the BART decoder learns the caption: labels are the tokenizer's ids of the caption (`<s> ... </s>`, what
Florence-2 generates after its `</s>` decoder start), padding -100; the model shifts them right itself. Other model
types caption but are refused for training (`TRAINABLE_MODEL_TYPES`), in one line naming what trains.

Remote code is never run: the `microsoft/Florence-2-*` checkpoints (and any config.json with `auto_map` for a
type transformers does not know) are refused in one line naming the native checkpoint to use instead.

Florence-2's `generate` runs inside `vlgen.captioning.florence_fast.fast_generation` (its DaViT vision tower
computed by vlgen on CPU: same captions, faster) unless the captioner's `fast_path` is off:
`VisionLanguageCaptioner.load(ref, fast_path=False)`, `load_captioner(ref, fast_path=False)` or
`VLGEN_FLORENCE_FAST_PATH=0`. Other model types have no fast path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vlgen.captioning import florence_fast
from vlgen.captioning.base import Captioner, processor_input_size, strip_captions
from vlgen.captioning.train_config import TRAINABLE_FAMILIES
from vlgen.captioning.vlm_config import (
    FAMILY,
    FLORENCE_TASKS,
    TRAINABLE_MODEL_TYPES,
    default_prompt,
    florence_remote_code_message,
)
from vlgen.errors import ConfigError, ModelNotAvailableError
from vlgen.hub import resolve_model

__all__ = ["FAMILY", "VisionLanguageCaptioner", "check_native", "florence_remote_code_message", "is_vlm_model_type"]

# Owned by vlm_config (torch-free, so the CLI's help can name them without importing torch).
_OWN_FAMILIES = ("blip", "vision-encoder-decoder")  # captioner families of their own, though Auto* maps them too


def is_vlm_model_type(model_type: str | None) -> bool:
    """Whether transformers' `AutoModelForImageTextToText` knows `model_type` (and it is not BLIP-1/ViT-GPT2)."""
    if not model_type or model_type in _OWN_FAMILIES:
        return False
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


def check_native(ref: str, config: dict) -> None:
    """Refuse a checkpoint that only loads with remote code, naming what to use instead."""
    message = florence_remote_code_message(ref)
    vision_type = (config.get("vision_config") or {}).get("model_type")
    if message is None and config.get("model_type") == "florence2" and ("auto_map" in config or vision_type == "davit"):
        # microsoft/Florence-2-* saved or copied to a directory: same model_type, remote-code layout
        message = (
            f"captioner '{ref}' is a remote-code Florence-2 checkpoint (auto_map / davit vision config), which "
            "vlgen never runs; use the native-transformers florence-community/Florence-2-base or "
            "florence-community/Florence-2-large instead"
        )
    if message is not None:
        raise ModelNotAvailableError(message)


def _eos_ids(value: Any) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, torch.Tensor):
        return {int(v) for v in value.flatten().tolist()}
    return {int(v) for v in value} if isinstance(value, (list, tuple, set)) else {int(value)}


def _hit_limit(new_tokens: list[int], eos: set[int], forced_eos: bool) -> bool:
    """Whether a row of exactly max_new_tokens generated tokens was cut: no eos in it, or (with a forced eos) its
    first eos is the last token - the one generation forces there."""
    first = next((i for i, t in enumerate(new_tokens) if t in eos), None)
    return first is None or (forced_eos and first == len(new_tokens) - 1)


class VisionLanguageCaptioner(Captioner):
    """A transformers image-text-to-text model and its processor, captioning with a prompt."""

    family = FAMILY

    def __init__(self, model, processor, prompt: str | None = None, fast_path: bool | None = None) -> None:
        self.model = model
        self.processor = processor
        config = model.config
        self.model_type: str | None = getattr(config, "model_type", None)
        # Florence-2 fast path (vlgen.captioning.florence_fast): None = $VLGEN_FLORENCE_FAST_PATH (unset: on); off
        # too when transformers' internals moved (with a warning). Other model types have none.
        self.fast_path = self.model_type == "florence2" and florence_fast.fast_path_usable(fast_path)
        self.is_encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
        self.chat_template = self.model_type != "florence2" and bool(getattr(processor, "chat_template", None))
        self.prompt = self.check_prompt(
            default_prompt(self.model_type, self.chat_template) if prompt is None else prompt
        )
        self.tokenizer = getattr(processor, "tokenizer", None)
        if self.tokenizer is None:
            raise ConfigError(f"{self.model_type} processor has no tokenizer; vlgen cannot caption with it")
        if not self.is_encoder_decoder:
            # Decoder-only: rows of a batch must end where generation starts (see the module docstring).
            self.tokenizer.padding_side = "left"

    @classmethod
    def load(
        cls,
        ref: str | Path | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        prompt: str | None = None,
        fast_path: bool | None = None,
    ) -> VisionLanguageCaptioner:
        """`fast_path=False`: Florence-2's `generate` is plain transformers' (see `vlgen.captioning.florence_fast`);
        None: on unless `VLGEN_FLORENCE_FAST_PATH=0`."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if ref is None:
            raise ConfigError(
                "a vision-language captioner needs a hub id or directory (florence-community/Florence-2-base)"
            )
        message = florence_remote_code_message(str(ref))
        if message is not None:  # before any download
            raise ModelNotAvailableError(message)
        resolved = resolve_model(str(ref), what="vision-language captioner")
        config_file = resolved.path / "config.json"
        if config_file.is_file():
            check_native(str(ref), json.loads(config_file.read_text(encoding="utf-8")))
        # Never trust_remote_code: an architecture transformers does not ship is refused by family_of first.
        processor = AutoProcessor.from_pretrained(resolved.path)
        model = AutoModelForImageTextToText.from_pretrained(resolved.path, dtype=dtype or torch.float32)
        return cls(model.to(device).eval(), processor, prompt=prompt, fast_path=fast_path)

    @property
    def input_size(self) -> tuple[int, int] | None:
        image_processor = getattr(self.processor, "image_processor", None)
        return processor_input_size(image_processor) if image_processor is not None else None  # Florence-2: 768

    def check_prompt(self, prompt: str) -> str:
        """The prompt as the processor takes it; a Florence-2 task token must stand alone (its processor's rule)."""
        if self.model_type == "florence2":
            for task in re.findall(r"<[A-Z_]+>", prompt):
                if prompt.strip() != task:
                    raise ConfigError(
                        f"--caption-prompt {prompt!r}: Florence-2's task token {task} must be the whole prompt "
                        f"({', '.join(FLORENCE_TASKS)} ...)"
                    )
        return prompt

    def _text(self, prompt: str) -> str:
        if not self.chat_template:
            return prompt
        content: list[dict] = [{"type": "image"}]
        if prompt:
            content.append({"type": "text", "text": prompt})
        messages = [{"role": "user", "content": content}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _inputs(self, images: Sequence[Image.Image], prompt: str) -> dict[str, torch.Tensor]:
        text = self._text(self.check_prompt(prompt))
        inputs = self.processor(images=list(images), text=[text] * len(images), padding=True, return_tensors="pt")
        dtype = self.model.dtype
        return {
            k: (v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device))
            for k, v in inputs.items()
            if isinstance(v, torch.Tensor)
        }

    @torch.no_grad()
    def caption_rows(
        self,
        images: Sequence[Image.Image],
        num_beams: int = 1,
        max_new_tokens: int = 30,
        prompt: str | None = None,
        **generate_kwargs: Any,
    ) -> list[dict]:
        """`{"caption": str}` per image, in order, with `"truncated": True` where the caption hit `max_new_tokens`
        before an end-of-sequence token."""
        inputs = self._inputs(images, self.prompt if prompt is None else prompt)
        was_training = self.model.training
        self.model.eval()
        try:
            # vlgen fast path (Florence-2 only; vlgen.captioning.florence_fast): its vision tower inside this block
            with florence_fast.fast_generation(self.model) if self.fast_path else nullcontext():
                ids = self.model.generate(
                    **inputs, num_beams=num_beams, max_new_tokens=max_new_tokens, do_sample=False, **generate_kwargs
                )  # (B, prompt + new) for decoder-only models, (B, 1 + new) for encoder-decoders
        finally:
            self.model.train(was_training)
        new = ids[:, 1:] if self.is_encoder_decoder else ids[:, inputs["input_ids"].shape[1] :]
        gen = self.model.generation_config
        eos = _eos_ids(generate_kwargs.get("eos_token_id", gen.eos_token_id)) or _eos_ids(self.tokenizer.eos_token_id)
        # BART-style models (Florence-2) force eos as the last allowed token: an eos there ends a cut caption.
        forced = generate_kwargs.get("forced_eos_token_id", getattr(gen, "forced_eos_token_id", None))
        captions = strip_captions(self.processor.batch_decode(new, skip_special_tokens=True))
        rows = []
        for caption, row in zip(captions, new.tolist(), strict=True):
            item: dict = {"caption": caption}
            if len(row) >= max_new_tokens and _hit_limit(row[:max_new_tokens], eos, forced is not None):
                item["truncated"] = True
            rows.append(item)
        return rows

    def generate(
        self,
        images: Sequence[Image.Image],
        num_beams: int = 1,
        max_new_tokens: int = 30,
        prompt: str | None = None,
        **generate_kwargs: Any,
    ) -> list[str]:
        rows = self.caption_rows(images, num_beams, max_new_tokens, prompt=prompt, **generate_kwargs)
        return [r["caption"] for r in rows]

    def check_trainable(self) -> None:
        """ConfigError in one line unless `vlgen train caption` can fine-tune this model type (Florence-2)."""
        if self.model_type not in TRAINABLE_MODEL_TYPES:
            raise ConfigError(
                f"vlgen cannot train {self.model_type} captioners (they caption only); train caption trains "
                f"{', '.join(TRAINABLE_FAMILIES)}"
            )

    def collate(self, images: Sequence[Image.Image], captions: Sequence[str], max_length: int) -> dict:
        """Florence-2's training batch: the prompt and images as `generate` gets them, the captions as labels."""
        self.check_trainable()
        inputs = self.processor(
            images=list(images), text=[self._text(self.prompt)] * len(images), padding=True, return_tensors="pt"
        )  # input_ids (B, image tokens + prompt: 577 + 7 for <CAPTION> at 768 px), attention_mask, pixel_values
        text = self.tokenizer(
            list(captions), padding="longest", truncation=True, max_length=max_length, return_tensors="pt"
        )  # (B, T): <s> w1 .. wn </s> <pad>*; truncation keeps </s>, so a cut caption still learns to end
        labels = text.input_ids.masked_fill(text.attention_mask == 0, -100)
        return {
            "input_ids": inputs["input_ids"],
            "attention_mask": inputs["attention_mask"],
            "pixel_values": inputs["pixel_values"],
            "labels": labels,
        }

    def loss(self, batch: dict) -> torch.Tensor:
        """Mean token cross-entropy of the labels (Florence-2's LM loss; -100 ignored)."""
        self.check_trainable()
        batch = {**batch, "pixel_values": batch["pixel_values"].to(self.model.dtype)}
        return self.model(**batch).loss

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        self.model.save_pretrained(out)
        self.processor.save_pretrained(out)
        return out

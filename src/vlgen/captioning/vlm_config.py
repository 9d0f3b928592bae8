"""The vision-language captioner family's names and default prompts, without torch (the CLI's help reads them).

See vlgen.captioning.vlm for the family itself.
"""

from __future__ import annotations

import re

FAMILY = "vlm"
# The instruction chat models get when no --caption-prompt is given: one sentence fits vlgen's default
# max_new_tokens (30) and is what a caption column usually holds.
DEFAULT_INSTRUCTION = "Describe this image in one sentence."
# model_type -> default prompt, for models that take a task token or no instruction at all.
DEFAULT_PROMPTS: dict[str, str] = {
    "florence2": "<CAPTION>",  # the task token; <DETAILED_CAPTION>, <MORE_DETAILED_CAPTION> for longer captions
    "blip-2": "",  # BLIP-2 captions without a prompt (its paper's zero-shot captioning)
    "paligemma": "caption en",
}
# Family-style names of vision-language checkpoints (`--model florence-2`): name -> the model_type its default
# checkpoint (vlgen.hub.DEFAULT_MODELS[name]) has.
MODEL_ALIASES: dict[str, str] = {"florence-2": "florence2"}
# The vision-language model types `vlgen train caption` fine-tunes (model_type -> the name it lists them by). Only
# Florence-2 for now: an encoder-decoder trained like BLIP (image + task token in, caption as the labels out).
TRAINABLE_MODEL_TYPES: dict[str, str] = {"florence2": "florence-2"}
# Florence-2's caption task tokens (the processor expands each to its instruction).
FLORENCE_TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>", "<OCR>")
_REMOTE_FLORENCE = re.compile(r"^microsoft/florence-2-(base|large)", re.IGNORECASE)


def florence_remote_code_message(ref: str) -> str | None:
    """The one-line refusal for the remote-code `microsoft/Florence-2-*` ids, else None."""
    m = _REMOTE_FLORENCE.match(str(ref))
    if m is None:
        return None
    size = m.group(1).lower()
    return (
        f"captioner '{ref}' needs remote code (trust_remote_code), which vlgen never runs; use the "
        f"native-transformers checkpoint florence-community/Florence-2-{size} (or florence-community/Florence-2-"
        f"{'large' if size == 'base' else 'base'}) instead"
    )


def default_prompt(model_type: str | None, has_chat_template: bool) -> str:
    """The prompt a model type gets when none is given (see the module docstring)."""
    if model_type in DEFAULT_PROMPTS:
        return DEFAULT_PROMPTS[model_type]
    return DEFAULT_INSTRUCTION if has_chat_template else ""

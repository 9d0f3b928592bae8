"""`RoundtripConfig`: everything that decides a round trip's outputs, saved as OUT/config.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vlgen.errors import ConfigError
from vlgen.metrics.text import metric_keys
from vlgen.t2i.generate import GenerateSettings, check_settings

# Beam width of the captioners: autocaption's default (captioning images for generation is its job too).
DEFAULT_NUM_BEAMS = 3
# Images per pipeline call. Batches are fixed slices of the run's image list, so a resumed run makes
# every batch exactly as an uninterrupted one (batched arithmetic differs from a batch of one in the last
# bit). 4 SDXL-1024 images with classifier-free guidance (8 UNet samples) fit a 24 GB GPU in fp16.
DEFAULT_GENERATION_BATCH_SIZE = 4
# The caption metric set of a round trip: what `vlgen evaluate captions` computes for these groups.
CAPTION_METRIC_GROUPS = ("coco", "bertscore", "combined", "prompt_similarity")
CAPTION_METRIC_KEYS = metric_keys(CAPTION_METRIC_GROUPS)  # BLEU-1..4, METEOR, ROUGE-L, CIDEr, BERTScore, ...
PROMPT_IMAGE_KEYS = ("CLIP-T",)  # prompts direction: the generated image against its prompt
PAIRED_IMAGE_KEYS = ("CLIP-I", "DINO", "Gram")  # images direction: a regeneration against its own original


@dataclass
class RoundtripConfig:
    """Options of `vlgen roundtrip prompts|images`; `generation` holds `vlgen generate`'s own settings.

    Example::

        import vlgen

        cfg = vlgen.RoundtripConfig(captioners=["blip", "runs/cnn/best"], num_beams=3)
        cfg.generation.num_inference_steps = 20  # a GenerateSettings
    """

    captioners: list[str] = field(default_factory=list)  # family name, hub id or directory, as given
    generation: GenerateSettings = field(default_factory=GenerateSettings)
    generation_batch_size: int = DEFAULT_GENERATION_BATCH_SIZE
    num_beams: int = DEFAULT_NUM_BEAMS
    max_new_tokens: int = 30
    caption_batch_size: int | None = None  # None: as `vlgen caption`, 32 // num_beams images
    caption_prompt: str | None = None  # the vision-language captioners' prompt (None: each model's default)
    caption_dtype: str | None = None  # the captioners' fp32 (None), bf16 or fp16
    template: str = "{caption}"  # images direction: the prompt made from a recovered caption
    clip_model: str | None = None  # None: the default CLIP, null with a reason when it is not available
    dino_model: str | None = None
    vgg_weights: str | None = None
    bertscore_model: str | None = None  # None: as `vlgen evaluate captions` (roberta-large, else MiniLM)
    device: str | None = None  # None: cuda when available
    source: str | None = None  # the PROMPTS file or image DIR (recorded; the API may take prompts directly)


def captioner_key(ref: str) -> str:
    """What makes two --captioner values the same model: the resolved path of a directory, else the text."""
    p = Path(ref).expanduser()
    return str(p.resolve()) if p.exists() else ref


def check_config(cfg: RoundtripConfig, direction: str) -> None:
    """ConfigError naming the option for anything that would fail (or be ambiguous) after long work."""
    if not cfg.captioners:
        raise ConfigError("give at least one --captioner (family name, hub id or model directory)")
    seen: dict[str, str] = {}
    for ref in cfg.captioners:
        key = captioner_key(ref)
        if key in seen:
            same = "" if seen[key] == ref else f" (the same model as {seen[key]!r})"
            raise ConfigError(f"--captioner {ref!r} is given twice{same}; give each captioner once")
        seen[key] = ref
    check_settings(cfg.generation)
    if cfg.generation.num_images_per_prompt != 1:
        raise ConfigError("a round trip makes one image per prompt (num_images_per_prompt must be 1)")
    if cfg.generation_batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {cfg.generation_batch_size}")
    if cfg.num_beams < 1:
        raise ConfigError(f"--num-beams must be at least 1, got {cfg.num_beams}")
    from vlgen.captioning.registry import parse_dtype

    parse_dtype(cfg.caption_dtype, "--dtype")
    if cfg.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be at least 1, got {cfg.max_new_tokens}")
    if direction == "images":
        from vlgen.t2i.autocaption import check_template

        check_template(cfg.template)

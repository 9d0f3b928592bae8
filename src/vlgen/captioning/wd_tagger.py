"""WD14 taggers (`SmilingWolf/wd-vit-tagger-v3` and its siblings) as a captioner: booru tags as a caption.

The v3 taggers are timm image classifiers with one sigmoid output per tag. A checkpoint directory (or hub
repo) holds `model.safetensors`, timm's `config.json` (`architecture`, `model_args`, `pretrained_cfg` with the
input size, mean and std) and `selected_tags.csv` (`tag_id,name,category,count`; category 9 rating, 0 general,
4 character), in the order of the model's outputs. It loads the way timm loads `hf-hub:` models, from the
resolved local directory: `timm.create_model("local-dir:DIR", pretrained=True)` (safetensors only here; a
directory without `model.safetensors` is refused rather than unpickled).

Preprocessing is SmilingWolf's (wdv3-timm, his commit "Fix color channels order"): RGB (alpha on white, as
vlgen loads every image), padded to a centred square on white, then the model's own timm eval transform
(resize to `input_size`, normalise with its mean/std), then the channels reversed to BGR - the models were
trained on OpenCV's BGR images. Scores are the sigmoid of the logits.

The caption is kohya's `tag_images_by_wd14_tagger.py --remove_underscore` output: general tags with score
>= `general_threshold` (0.35) and character tags >= `character_threshold` (0.85; above 1 turns them off),
ratings left out, sorted by score (ties in the tag list's order), joined with ", ". Underscores become spaces
except in kaomoji: kohya keeps every tag of 3 characters or fewer as is (`^_^`, `>_<`, `o_o` ...), and the
longer kaomoji of the WD tagger UIs' list (`(o)_(o)`, `||_||` ...) are kept too. Parentheses are escaped
(`\\(`, `\\)`) so prompt parsers (A1111, ComfyUI) read them as text, not weights.
`caption_rows` adds `"tags": {name: score}` (the selected tags, as named in the tag list).

`with_tags(captioner, tagger)` is `--tags-with`: "CAPTION, TAGS" per image.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vlgen.captioning.base import Captioner
from vlgen.captioning.wd_tagger_config import (
    DEFAULT_CHARACTER_THRESHOLD,
    DEFAULT_GENERAL_THRESHOLD,
    DEFAULT_REPO,
    FAMILY,
)
from vlgen.errors import ConfigError, ModelNotAvailableError
from vlgen.hub import resolve_model

TAGS_FILE = "selected_tags.csv"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
RATING, GENERAL, CHARACTER = 9, 0, 4  # selected_tags.csv categories
# Kaomoji longer than kohya's 3-character rule, from the WD tagger UIs' list (SmilingWolf's wd-tagger space,
# toriato's webui extension); the short ones of that list (0_0, ^_^, >_<, o_o, u_u, x_x, @_@, +_+, +_-, =_=,
# ._., 3_3, 6_9, >_o, |_|) are covered by the length rule.
LONG_KAOMOJIS = frozenset({"(o)_(o)", "<o>_<o>", "<|>_<|>", "||_||"})
# Only these files are fetched for a hub id (the repos also hold model.onnx, which vlgen does not read).
_ALLOW_PATTERNS = [CONFIG_FILE, WEIGHTS_FILE, TAGS_FILE, "*.md"]


def is_kaomoji(tag: str) -> bool:
    return len(tag) <= 3 or tag in LONG_KAOMOJIS


def format_tag(tag: str) -> str:
    """A tag as a caption writes it: `long_hair` -> `long hair`, `^_^` kept, `ganyu_(genshin_impact)` ->
    `ganyu \\(genshin impact\\)`."""
    text = tag if is_kaomoji(tag) else tag.replace("_", " ")
    return text.replace("(", "\\(").replace(")", "\\)")


def is_wd_tagger_config(config: Any) -> bool:
    """A timm classifier config.json (what the WD taggers ship): `architecture`, no transformers `model_type`."""
    return isinstance(config, dict) and isinstance(config.get("architecture"), str) and "model_type" not in config


@dataclass(frozen=True)
class TagList:
    """The model's outputs, in order: tag names and their categories (RATING, GENERAL, CHARACTER, or other)."""

    names: tuple[str, ...]
    categories: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.names)


def read_tag_list(path: str | Path) -> TagList:
    """`selected_tags.csv` (header `tag_id,name,category,count`); any problem is one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotAvailableError(
            f"WD tagger: {path} is missing; a tagger directory holds {TAGS_FILE} (the tag list), {CONFIG_FILE} "
            f"and {WEIGHTS_FILE}"
        )
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ModelNotAvailableError(f"WD tagger: {path} cannot be read ({e})") from None
    header = [h.strip() for h in rows[0]] if rows else []
    if "name" not in header or "category" not in header:
        raise ModelNotAvailableError(
            f"WD tagger: {path}: the header is {','.join(header) or 'empty'}, expected tag_id,name,category,count"
        )
    i_name, i_cat = header.index("name"), header.index("category")
    names, categories = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            names.append(row[i_name])
            categories.append(int(row[i_cat]))
        except (IndexError, ValueError):
            raise ModelNotAvailableError(f"WD tagger: {path}:{line}: expected tag_id,name,category,count") from None
    if not names:
        raise ModelNotAvailableError(f"WD tagger: {path} lists no tags")
    return TagList(tuple(names), tuple(categories))


def check_threshold(value: float, option: str) -> float:
    if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise ConfigError(f"{option} must be a number >= 0 (above 1 selects no tag), got {value!r}")
    return float(value)


@dataclass
class Tagging:
    """One image's result: the selected tags (general and character) by score, high first, and all ratings."""

    tags: list[tuple[str, float]]
    ratings: dict[str, float]

    @property
    def caption(self) -> str:
        return ", ".join(format_tag(name) for name, _ in self.tags)


def select_tags(
    scores: Sequence[float], tag_list: TagList, general_threshold: float, character_threshold: float
) -> Tagging:
    """Tags of one image's scores (one per tag of `tag_list`): general >= general_threshold, character >=
    character_threshold (kohya's comparison), sorted by score, ties in the list's order. Ratings are returned
    apart and never selected."""
    picked, ratings = [], {}
    for i, (name, category, score) in enumerate(zip(tag_list.names, tag_list.categories, scores, strict=True)):
        score = float(score)
        if category == RATING:
            ratings[name] = score
        elif (category == GENERAL and score >= general_threshold) or (
            category == CHARACTER and score >= character_threshold
        ):
            picked.append((-score, i, name))
    return Tagging([(name, -neg) for neg, _, name in sorted(picked)], ratings)


def pad_square(image: Image.Image) -> Image.Image:
    """The image centred on a white square canvas (side: its longer side), as the taggers were trained."""
    w, h = image.size
    side = max(w, h)
    if w == h:
        return image
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas


class WdTaggerCaptioner(Captioner):
    family = FAMILY

    def __init__(
        self,
        model: torch.nn.Module,
        tag_list: TagList,
        config: dict,
        *,
        general_threshold: float = DEFAULT_GENERAL_THRESHOLD,
        character_threshold: float = DEFAULT_CHARACTER_THRESHOLD,
    ) -> None:
        from timm.data import create_transform, resolve_model_data_config

        self.model = model
        self.tag_list = tag_list
        self.config = config  # timm's config.json, as loaded: `save` writes it back
        self.general_threshold = check_threshold(general_threshold, "--general-threshold")
        self.character_threshold = check_threshold(character_threshold, "--character-threshold")
        self.data_config = resolve_model_data_config(model)  # input_size, interpolation, mean, std, crop_pct
        self.transform = create_transform(**self.data_config, is_training=False)

    @classmethod
    def load(
        cls,
        ref: str | Path | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        *,
        general_threshold: float = DEFAULT_GENERAL_THRESHOLD,
        character_threshold: float = DEFAULT_CHARACTER_THRESHOLD,
    ) -> WdTaggerCaptioner:
        """From a hub id (default SmilingWolf/wd-vit-tagger-v3) or a directory in the WD layout."""
        ref = str(ref or DEFAULT_REPO)
        path = resolve_model(ref, what="WD tagger captioner", allow_patterns=_ALLOW_PATTERNS).path
        tag_list = read_tag_list(path / TAGS_FILE)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (path / name).is_file():
                raise ModelNotAvailableError(f"WD tagger '{ref}': {path / name} is missing")
        config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))  # timm parsed it already
        model = _create_timm_model(ref, path)
        outputs = getattr(model, "num_classes", None)
        if outputs != len(tag_list):
            raise ModelNotAvailableError(
                f"WD tagger '{ref}': {path / TAGS_FILE} lists {len(tag_list)} tags but the model has {outputs} outputs"
            )
        model = model.to(device=device, dtype=dtype or torch.float32).eval()
        return cls(
            model, tag_list, config, general_threshold=general_threshold, character_threshold=character_threshold
        )

    @property
    def input_size(self) -> tuple[int, int] | None:
        _, height, width = self.data_config["input_size"]  # (3, 448, 448) for the v3 taggers
        return int(width), int(height)

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(B, 3, H, W) in BGR channel order, normalised with the model's mean/std."""
        batch = torch.stack([self.transform(pad_square(im.convert("RGB"))) for im in images])  # RGB
        return batch[:, [2, 1, 0]].to(self.device, dtype=next(self.model.parameters()).dtype)

    @torch.no_grad()
    def scores(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(B, num_tags) sigmoid scores, float32 on CPU."""
        was_training = self.model.training
        self.model.eval()
        try:
            logits = self.model(self.pixel_values(images))
        finally:
            self.model.train(was_training)
        return torch.sigmoid(logits.float()).cpu()

    def tag(self, images: Sequence[Image.Image]) -> list[Tagging]:
        if not images:
            return []
        return [
            select_tags(row.tolist(), self.tag_list, self.general_threshold, self.character_threshold)
            for row in self.scores(images)
        ]

    def generate(
        self, images: Sequence[Image.Image], num_beams: int = 1, max_new_tokens: int = 30, **generate_kwargs: Any
    ) -> list[str]:
        """Tag captions; a tagger does not decode, so `num_beams`/`max_new_tokens` do not apply."""
        return [t.caption for t in self.tag(images)]

    def caption_rows(
        self, images: Sequence[Image.Image], num_beams: int = 1, max_new_tokens: int = 30, **generate_kwargs: Any
    ) -> list[dict]:
        return [{"caption": t.caption, "tags": {n: round(s, 4) for n, s in t.tags}} for t in self.tag(images)]

    def collate(self, images: Sequence[Image.Image], captions: Sequence[str], max_length: int) -> dict:
        raise ConfigError("the wd-tagger family tags images; it does not train as a captioner")

    def loss(self, batch: dict) -> torch.Tensor:
        raise ConfigError("the wd-tagger family tags images; it does not train as a captioner")

    def save(self, out_dir: str | Path) -> Path:
        """The WD layout: model.safetensors, config.json (timm's), selected_tags.csv."""
        from vlgen.fileio import atomic_directory

        out = Path(out_dir)
        with atomic_directory(out) as tmp:
            write_wd_tagger(tmp, self.model, self.tag_list, self.config)
        return out


def write_wd_tagger(
    out: Path, model: torch.nn.Module, tag_list: TagList, config: dict, counts: Sequence[int] | None = None
) -> None:
    """Write a timm classifier, its timm `config.json` and its tag list in the WD layout into directory `out`."""
    from safetensors.torch import save_file

    from vlgen.fileio import write_json

    write_json(out / CONFIG_FILE, config)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE))
    with open(out / TAGS_FILE, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["tag_id", "name", "category", "count"])
        for i, (name, category) in enumerate(zip(tag_list.names, tag_list.categories, strict=True)):
            writer.writerow([i, name, category, counts[i] if counts is not None else 0])


def _create_timm_model(ref: str, path: Path) -> torch.nn.Module:
    """timm's own local-dir loading (config.json -> architecture/model_args/pretrained_cfg, then the weights),
    with its failures said in one line naming the file."""
    import timm

    try:
        return timm.create_model(f"local-dir:{path}", pretrained=True)
    except RuntimeError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if msg.startswith("Unknown model"):
            raise ModelNotAvailableError(
                f"WD tagger '{ref}': {path / CONFIG_FILE} names an architecture timm {timm.__version__} does not "
                f"know ({msg}); a newer timm may know it"
            ) from None
        raise ModelNotAvailableError(
            f"WD tagger '{ref}': {path / WEIGHTS_FILE} does not fit the model ({msg})"
        ) from None
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise ModelNotAvailableError(
            f"WD tagger '{ref}': {path / CONFIG_FILE} is not a timm model config timm can build ({type(e).__name__}: "
            f"{e})"
        ) from None


class TagsWithCaptioner(Captioner):
    """`--tags-with`: each image's caption from `captioner`, then the tags (or caption) of `tagger`:
    "CAPTION, TAGS" (the one that is empty is left out). Rows keep the tagger's `tags` field."""

    family = "tags-with"

    def __init__(self, captioner: Captioner, tagger: Captioner) -> None:
        self.captioner = captioner
        self.tagger = tagger
        self.model = captioner.model  # device/to() follow the captioner; `to` moves both

    def to(self, device: str | torch.device) -> TagsWithCaptioner:
        self.captioner.to(device)
        self.tagger.to(device)
        return self

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The larger of the two (images are reduced on decode to no less than twice this)."""
        sizes = [self.captioner.input_size, self.tagger.input_size]
        if any(s is None for s in sizes):
            return None
        return max(s[0] for s in sizes), max(s[1] for s in sizes)

    def caption_rows(
        self, images: Sequence[Image.Image], num_beams: int = 1, max_new_tokens: int = 30, **generate_kwargs: Any
    ) -> list[dict]:
        rows = self.captioner.caption_rows(
            images, num_beams=num_beams, max_new_tokens=max_new_tokens, **generate_kwargs
        )
        tag_rows = self.tagger.caption_rows(images, num_beams=num_beams, max_new_tokens=max_new_tokens)
        merged = []
        for row, tags in zip(rows, tag_rows, strict=True):
            caption = ", ".join(part for part in (row["caption"].strip(), tags["caption"].strip()) if part)
            merged.append({**tags, **row, "caption": caption})
        return merged

    def generate(
        self, images: Sequence[Image.Image], num_beams: int = 1, max_new_tokens: int = 30, **generate_kwargs: Any
    ) -> list[str]:
        return [r["caption"] for r in self.caption_rows(images, num_beams, max_new_tokens, **generate_kwargs)]

    def collate(self, images: Sequence[Image.Image], captions: Sequence[str], max_length: int) -> dict:
        raise ConfigError("--tags-with is for captioning; train the captioner on its own")

    def loss(self, batch: dict) -> torch.Tensor:
        raise ConfigError("--tags-with is for captioning; train the captioner on its own")

    def save(self, out_dir: str | Path) -> Path:
        raise ConfigError("--tags-with combines two captioners at captioning time; save each on its own")

    @classmethod
    def load(cls, ref: str | Path | None = None, device: str | torch.device = "cpu") -> TagsWithCaptioner:
        raise ConfigError("load the captioner and the tagger, then combine them with with_tags(captioner, tagger)")


def with_tags(captioner: Captioner, tagger: Captioner) -> TagsWithCaptioner:
    """`--tags-with TAGGER`: captions "CAPTION, TAGS" from `captioner` and `tagger` (usually a WD tagger)."""
    return TagsWithCaptioner(captioner, tagger)


def check_tagger_options(
    families: Sequence[str], general_threshold: float | None = None, character_threshold: float | None = None
) -> None:
    """Before any model loads: thresholds need a WD tagger among `families` (of --model and --tags-with) and
    must be numbers >= 0; a ConfigError names the option."""
    given = [(o, v) for o, v in (("--general-threshold", general_threshold),
             ("--character-threshold", character_threshold)) if v is not None]  # fmt: skip
    if given and FAMILY not in families:
        raise ConfigError(
            f"{' and '.join(o for o, _ in given)}: only for a WD tagger (as --model or --tags-with, e.g. "
            f"{DEFAULT_REPO}); the captioners here are {', '.join(families)}"
        )
    for option, value in given:
        check_threshold(value, option)


def set_thresholds(
    captioner: Captioner, general_threshold: float | None = None, character_threshold: float | None = None
) -> None:
    """Set the thresholds (None: keep) of the WD tagger in `captioner`: itself or its `--tags-with` tagger."""
    for tagger in (captioner, getattr(captioner, "tagger", None)):
        if isinstance(tagger, WdTaggerCaptioner):
            if general_threshold is not None:
                tagger.general_threshold = check_threshold(general_threshold, "--general-threshold")
            if character_threshold is not None:
                tagger.character_threshold = check_threshold(character_threshold, "--character-threshold")

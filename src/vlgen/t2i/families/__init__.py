"""Text -> image base-model families: one module each (sdxl.py, sd15.py, flux.py) behind this registry.

`family_of(base)` reads which family a base is from its `model_index.json` (`_class_name`, the diffusers
pipeline class), which is what every diffusers-format checkpoint carries; `--family` overrides it (a
checkpoint with a custom pipeline class). Adding a family: a module with a `T2IFamily` subclass, one line
in FAMILIES and its pipeline class names in PIPELINE_CLASSES, and a tiny builder in vlgen.testing.
"""

from __future__ import annotations

import json
from pathlib import Path

from vlgen.errors import ConfigError
from vlgen.t2i.families.base import Components, GenerationDefaults, Prediction, T2IFamily
from vlgen.t2i.families.flux import FluxFamily
from vlgen.t2i.families.sd15 import Sd15Family
from vlgen.t2i.families.sdxl import SdxlFamily

FAMILIES: dict[str, T2IFamily] = {f.name: f for f in (SdxlFamily(), Sd15Family(), FluxFamily())}

# model_index.json `_class_name` -> family (the text-to-image class and its siblings sharing the components)
PIPELINE_CLASSES: dict[str, str] = {
    "StableDiffusionXLPipeline": "sdxl", "StableDiffusionXLImg2ImgPipeline": "sdxl",
    "StableDiffusionPipeline": "sd15", "StableDiffusionImg2ImgPipeline": "sd15",
    "FluxPipeline": "flux", "FluxImg2ImgPipeline": "flux",
}  # fmt: skip

# Hub ids besides each family's default_hub_id
KNOWN_HUB_IDS: dict[str, T2IFamily] = {
    "black-forest-labs/FLUX.1-schnell": FAMILIES["flux"],
    "runwayml/stable-diffusion-v1-5": FAMILIES["sd15"],
    "stabilityai/stable-diffusion-xl-base-0.9": FAMILIES["sdxl"],
}

__all__ = [
    "FAMILIES", "PIPELINE_CLASSES", "Components", "GenerationDefaults", "Prediction", "T2IFamily", "get_family",
    "family_hint", "family_of", "family_of_path", "resolve_base",
]  # fmt: skip


def get_family(name: str, option: str = "--family") -> T2IFamily:
    if name not in FAMILIES:
        raise ConfigError(f"{option} {name}: unknown text-to-image family; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_of_path(path: Path, family: str | None = None) -> T2IFamily:
    """The family of a diffusers-format base directory: `family` if given, else its model_index.json."""
    if family:
        return get_family(family)
    index = path / "model_index.json"
    if not index.is_file():
        raise ConfigError(
            f"{path}: no model_index.json, so the base's family is unknown; pass --family ({', '.join(FAMILIES)})"
        )
    try:
        cls = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
    except (OSError, ValueError) as e:
        raise ConfigError(f"{index}: unreadable ({e})") from None
    if cls not in PIPELINE_CLASSES:
        raise ConfigError(
            f"{index}: _class_name {cls!r} is not a text-to-image family vlgen trains "
            f"({', '.join(PIPELINE_CLASSES)}); pass --family to say which it is"
        )
    return FAMILIES[PIPELINE_CLASSES[cls]]


def resolve_base(base: str) -> Path:
    """The diffusers folder of a base: a folder or hub id (vlgen.hub), or a single `.safetensors` checkpoint,
    converted once into a cached folder (families/single_file.py)."""
    from vlgen.t2i.families.single_file import is_single_file, resolve_single_file

    if is_single_file(base):
        return resolve_single_file(base)
    from vlgen.hub import resolve_model

    return resolve_model(base, what="base model").path


def family_hint(base: str, family: str | None = None) -> T2IFamily | None:
    """The family if it is known without resolving the base (so without any download): `family`, a local
    folder's model_index.json, or a hub id vlgen ships defaults for; None otherwise (or if that folder has none)."""
    if family:
        return get_family(family)
    path = Path(base).expanduser()
    if (path / "model_index.json").is_file():
        return family_of_path(path)
    from vlgen.t2i.families.single_file import is_single_file, single_file_family

    if is_single_file(path):
        return single_file_family(path)[0]  # its keys only: no weights read
    known = {f.default_hub_id: f for f in FAMILIES.values()} | KNOWN_HUB_IDS
    return known.get(base)


def family_of(base: str, family: str | None = None) -> T2IFamily:
    """The family of a base given as a hub id or directory (resolved like every model reference)."""
    if family:
        return get_family(family)
    return family_of_path(resolve_base(base))

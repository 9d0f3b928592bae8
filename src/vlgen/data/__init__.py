"""Datasets for vlgen: imagefolder records, safe image loading, seeded splits, importers, synthetic scenes.

The small public surface other parts of vlgen use::

    from vlgen.data import Record, load_records, write_dataset, load_image, load_image_bytes

    records = load_records("data/flickr8k", split="train")       # list[Record], captions always a list
    image = load_image(records[0].path)                         # RGB PIL image, EXIF-rotated
    write_dataset("out", records)                               # copies images, writes metadata.jsonl

Importers (`vlgen.data.importers`), validation (`vlgen.data.validate`) and synthetic data
(`vlgen.data.synth`) are imported on use; this package imports nothing else of vlgen but errors, fileio
and progress.
"""

from vlgen.data.images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, load_image, load_image_bytes, probe_image
from vlgen.data.records import (
    DEFAULT_CAPTION_COLUMN,
    METADATA_NAME,
    SPLITS,
    Record,
    check_file_name,
    load_records,
    resolve_file_name,
    write_dataset,
)
from vlgen.data.splits import DEFAULT_RATIOS, DEFAULT_SEED, assign_splits, parse_ratios, split_records

__all__ = [
    "DEFAULT_CAPTION_COLUMN",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_RATIOS",
    "DEFAULT_SEED",
    "IMAGE_EXTENSIONS",
    "METADATA_NAME",
    "SPLITS",
    "Record",
    "assign_splits",
    "check_file_name",
    "load_image",
    "load_image_bytes",
    "load_records",
    "parse_ratios",
    "probe_image",
    "resolve_file_name",
    "split_records",
    "write_dataset",
]

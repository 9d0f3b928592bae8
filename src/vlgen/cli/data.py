"""`vlgen data ...`: import, validate and synthesise datasets (thin wrappers over vlgen.data).

Heavy imports (PIL, numpy, pyarrow) happen inside the commands so `vlgen --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from vlgen.cli._console import err, out
from vlgen.errors import ConfigError

app = typer.Typer(help="Import, validate and synthesise imagefolder datasets.", no_args_is_help=True)
import_app = typer.Typer(help="Convert a public dataset or a folder into an imagefolder dataset.", no_args_is_help=True)
app.add_typer(import_app, name="import")

DEFAULT_MAX_PIXELS = 64_000_000  # kept equal to vlgen.data.images.DEFAULT_MAX_PIXELS (checked in tests)
DEFAULT_TOKENIZER = "openai/clip-vit-large-patch14"  # kept equal to vlgen.data.lint.DEFAULT_TOKENIZER (tested)


ON_ERROR = typer.Option(
    "fail",
    "--on-error",
    metavar="fail|skip",
    help="fail: stop at the first bad item; skip: leave it out and list it in OUT/skipped.jsonl.",
)
SPLIT_RATIOS = typer.Option(
    "0.6,0.2,0.2",
    "--split-ratios",
    help="train,validation,test ratios where the source has no splits (split by image).",
)
SEED = typer.Option(42, "--seed", help="Seed for splits and sampling.")
MAX_PIXELS = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", help="Reject images with more pixels than this.")
OVERWRITE = typer.Option(False, "--overwrite", help="Write into a non-empty OUT folder.")


def _options(on_error: str, split_ratios: str, seed: int, max_pixels: int, overwrite: bool):
    from vlgen.data.importers import ImportOptions
    from vlgen.data.splits import parse_ratios

    # A plain string checked here (not an Enum) so a bad value is our one-line ConfigError, not a usage traceback.
    if on_error not in ("fail", "skip"):
        raise ConfigError(f"--on-error {on_error!r}: expected 'fail' or 'skip'")
    return ImportOptions(on_error, parse_ratios(split_ratios), seed, max_pixels, overwrite)


def _report(result) -> None:
    sizes = ", ".join(f"{k} {v}" for k, v in result.split_sizes.items())
    err.print(
        f"wrote {result.n_images} images, {result.n_captions} captions ({sizes}) to {result.out_dir}",
        soft_wrap=True,
        markup=False,
    )
    for kind, items in (("skipped (errors)", result.skipped), ("left out (by design)", result.excluded)):
        if items:
            err.print(
                f"{kind}: {len(items)} item(s); first: {items[0]['item']}: {items[0]['reason']}",
                soft_wrap=True,
                markup=False,
            )
    if result.skipped or result.excluded:
        err.print(f"every left-out item is listed in {result.out_dir / 'skipped.jsonl'}", soft_wrap=True, markup=False)
    err.print(
        f"images were header-checked only; run `vlgen data validate {result.out_dir}` to decode them all",
        soft_wrap=True,
        markup=False,
    )


@import_app.command("flickr8k")
def import_flickr8k(
    src: Path = typer.Argument(..., help="Folder holding Flickr8k.token.txt, the split lists and the images."),
    out_dir: Path = typer.Argument(..., metavar="OUT", help="Output dataset folder."),
    on_error: str = ON_ERROR,
    seed: int = SEED,
    max_pixels: int = MAX_PIXELS,
    overwrite: bool = OVERWRITE,
) -> None:
    """Import Flickr8k with its official train/validation/test splits (6000/1000/1000)."""
    from vlgen.data.importers import import_flickr8k as run

    _report(run(src, out_dir, _options(on_error, "0.6,0.2,0.2", seed, max_pixels, overwrite)))


@import_app.command("coco")
def import_coco(
    annotations_json: Path = typer.Argument(..., help="captions_*.json (images + annotations)."),
    images_dir: Path = typer.Argument(..., help="Folder with the images named in the annotations."),
    out_dir: Path = typer.Argument(..., metavar="OUT", help="Output dataset folder."),
    karpathy_split: Path | None = typer.Option(
        None, "--karpathy-split", help="dataset_coco.json for the Karpathy splits (restval -> train)."
    ),
    on_error: str = ON_ERROR,
    split_ratios: str = SPLIT_RATIOS,
    seed: int = SEED,
    max_pixels: int = MAX_PIXELS,
    overwrite: bool = OVERWRITE,
) -> None:
    """Import MS-COCO captions, with the Karpathy split or seeded splits by image."""
    from vlgen.data.importers import import_coco as run

    opts = _options(on_error, split_ratios, seed, max_pixels, overwrite)
    _report(run(annotations_json, images_dir, out_dir, karpathy_split=karpathy_split, opts=opts))


@import_app.command("diffusiondb")
def import_diffusiondb(
    src: Path = typer.Argument(..., help="Folder with metadata.parquet and part-XXXXXX folders or zips."),
    out_dir: Path = typer.Argument(..., metavar="OUT", help="Output dataset folder."),
    sample: int | None = typer.Option(None, "--sample", help="Seeded random sample size (default: all present)."),
    on_error: str = ON_ERROR,
    split_ratios: str = SPLIT_RATIOS,
    seed: int = SEED,
    max_pixels: int = MAX_PIXELS,
    overwrite: bool = OVERWRITE,
) -> None:
    """Import a seeded sample of DiffusionDB (image, prompt) pairs; the prompt is the caption."""
    from vlgen.data.importers import import_diffusiondb as run

    _report(run(src, out_dir, sample=sample, opts=_options(on_error, split_ratios, seed, max_pixels, overwrite)))


@import_app.command("folder")
def import_folder(
    src: Path = typer.Argument(..., help="Folder of images (searched recursively)."),
    out_dir: Path = typer.Argument(..., metavar="OUT", help="Output dataset folder."),
    captions: Path | None = typer.Option(
        None, "--captions", help="CSV/JSONL with file and caption columns (default: same-name .txt sidecars)."
    ),
    on_error: str = ON_ERROR,
    split_ratios: str = SPLIT_RATIOS,
    seed: int = SEED,
    max_pixels: int = MAX_PIXELS,
    overwrite: bool = OVERWRITE,
) -> None:
    """Import a folder of images captioned by .txt sidecars or a captions file."""
    from vlgen.data.importers import import_folder as run

    _report(
        run(src, out_dir, captions_file=captions, opts=_options(on_error, split_ratios, seed, max_pixels, overwrite))
    )


@app.command("validate")
def validate(
    dataset_dir: Path = typer.Argument(..., metavar="DIR", help="Dataset folder with metadata.jsonl."),
    caption_column: str = typer.Option("text", "--caption-column", help="Column holding the caption(s)."),
    max_pixels: int = MAX_PIXELS,
) -> int:
    """Check every row and image; print one `file:line: reason` per problem; exit 1 if there are any."""
    from vlgen.data.validate import validate_dataset

    report = validate_dataset(dataset_dir, caption_column=caption_column, max_pixels=max_pixels, progress=True)
    for p in report.problems:
        out.print(str(p), markup=False)
    out.print(report.summary(), markup=False)
    return 0 if report.ok else 1


@app.command("lint")
def lint(
    dataset_dir: Path = typer.Argument(
        ..., metavar="DIR", help="Images with same-name .txt captions, or a folder with metadata.jsonl."
    ),
    trigger: str | None = typer.Option(
        None, "--trigger", help="Token every caption must hold once, e.g. sks (default: not checked)."
    ),
    caption_column: str = typer.Option("text", "--caption-column", help="metadata.jsonl column holding captions."),
    tokenizer: str = typer.Option(
        DEFAULT_TOKENIZER,
        "--tokenizer",
        help="Tokenizer (folder or hub id) whose window captions must fit: SDXL's CLIP (77 tokens); "
        "a T5 tokenizer (512) for Flux; none: no length check.",
    ),
    clip_model: str | None = typer.Option(
        None,
        "--clip-model",
        help="CLIP (folder or hub id) to flag captions whose CLIPScore is below median - 3*MAD (default: off).",
    ),
    device: str = typer.Option("cpu", "--device", help="Device for --clip-model."),
    max_pixels: int = MAX_PIXELS,
    json_: bool = typer.Option(False, "--json", help="Print one JSON object to stdout instead of lines."),
) -> int:
    """Check captions before training: one `file: level: message` line per finding; exit 1 on any error.

    Errors: caption missing or empty; --trigger absent. Warnings: the trigger twice or more; a 2-5 word phrase
    in half the captions or more; duplicates; captions cut by the text encoder's window; CLIPScore outliers.
    """
    import json

    from vlgen.data.lint import lint_captions
    from vlgen.hub import name_model_options

    name_model_options(clip="--clip-model")
    report = lint_captions(
        dataset_dir,
        trigger=trigger,
        caption_column=caption_column,
        tokenizer=None if tokenizer.strip().lower() == "none" else tokenizer,
        clip_model=clip_model,
        device=device,
        max_pixels=max_pixels,
        progress=True,
    )
    if json_:
        out.print(json.dumps(report.to_json(), ensure_ascii=False), markup=False, highlight=False)
    else:
        for finding in report.findings:
            out.print(str(finding), markup=False)
        out.print(report.summary(), markup=False)
    skipped = (report.settings.get("clip") or {}).get("skipped")
    if skipped:
        err.print(f"CLIPScore outliers not checked: {skipped}", markup=False)
    return 0 if report.ok else 1


@app.command("synth")
def synth(
    out_dir: Path = typer.Argument(..., metavar="OUT", help="Output dataset folder."),
    n: int = typer.Option(1000, "--n", help="Number of images."),
    seed: int = typer.Option(0, "--seed", help="Same seed, bit-identical files."),
    style: bool = typer.Option(False, "--style", help="Render in one glossy 3D-icon style (for DreamBooth)."),
    image_size: int = typer.Option(64, "--image-size", help="Side of the square images in pixels."),
    split_ratios: str = SPLIT_RATIOS,
    overwrite: bool = OVERWRITE,
) -> None:
    """Render a synthetic captioning dataset of coloured shapes with compositional captions."""
    from vlgen.data.splits import parse_ratios
    from vlgen.data.synth import synth_dataset

    records = synth_dataset(
        out_dir,
        n,
        seed=seed,
        style="glossy" if style else "plain",
        image_size=image_size,
        split_ratios=parse_ratios(split_ratios),
        overwrite=overwrite,
    )
    counts = {s: sum(r.split == s for r in records) for s in ("train", "validation", "test")}
    err.print(
        f"wrote {len(records)} images to {out_dir} ({', '.join(f'{k} {v}' for k, v in counts.items())})",
        soft_wrap=True,
        markup=False,
    )

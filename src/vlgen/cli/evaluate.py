"""`vlgen evaluate ...`: score captions/prompts, compare two runs, score generated images (thin wrappers over
vlgen.metrics/report)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from vlgen.cli._console import err, out
from vlgen.errors import ConfigError, VlgenError
from vlgen.hub import DEFAULT_MODELS
from vlgen.metrics.image_defaults import (  # the library's defaults, torch-free so `--help` stays fast
    DEFAULT_BATCH_SIZE,
    DEFAULT_FID_MIN_IMAGES,
    DEFAULT_GRAM_IMAGE_SIZE,
    DEFAULT_KID_SUBSET_SIZE,
    DEFAULT_KID_SUBSETS,
    DEFAULT_SEED,
    VGG19_STYLE_LAYERS,
)
from vlgen.metrics.text import DEFAULT_COMBINED_WEIGHTS

app = typer.Typer(
    help="Score captions or prompts (coco-caption, sacreBLEU, ROUGE, BERTScore, ...) and generated images.",
    no_args_is_help=True,
)

_COMBINED_WEIGHTS = ",".join(str(w) for w in DEFAULT_COMBINED_WEIGHTS)  # "0.65,0.35"
_METRICS_HELP = "Comma-separated groups: coco, spice, sacrebleu, rouge, bertscore, combined, prompt_similarity, or all."


def _weights(text: str) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"--combined-weights must be two numbers 'W_BERT,W_BLEU', got {text!r}") from None
    return a, b


def _caption_images(pred: Path, items, images_dir: Path | None) -> list[Path]:
    """The image of each item (joined from --data, else --images/file_name), header-checked now, before CLIP
    loads: a missing or broken file stops the run in one line naming it."""
    from vlgen.errors import DataError
    from vlgen.report.images import probe_all

    paths = []
    for it in items:
        path = it.image
        if path is None and images_dir is not None and it.file_name is not None:
            path = images_dir / it.file_name
        if path is None:
            need = "a 'file_name' and --images DIR" if images_dir is None else "a 'file_name' (relative to --images)"
            raise DataError(
                f"CLIPScore needs each caption's image: this line has none (give it {need}, or --data DIR)",
                path=str(pred),
                line=it.line,
            )
        paths.append(path)
    probe_all(paths)
    return paths


def _references_or_none(pred: Path, items) -> list[list[str]] | None:
    """Every item's references, or None when no item has any (reference-free); some but not all is an error."""
    from vlgen.errors import DataError

    missing = [it for it in items if not it.references]
    if missing and len(missing) < len(items):
        first = next(it for it in items if it.references)
        raise DataError(
            f"no 'references' on this line but line {first.line} has them: give every line references or none",
            path=str(pred),
            line=missing[0].line,
        )
    return None if missing else [it.references for it in items]


def _score_file(
    pred: Path, *, data, split, caption_column, metrics, bertscore_model, bertscore_layers, weights, device,
    clip_model=None, images_dir=None,
):  # fmt: skip
    from vlgen.metrics import compute_caption_metrics, parse_metrics
    from vlgen.report.predictions import read_predictions

    groups = parse_metrics(metrics)  # before reading: a typo in --metrics should not wait for a big file
    items = read_predictions(
        pred, data_dir=data, split=split, caption_column=caption_column, require_references=clip_model is None
    )
    image_files = None
    if clip_model is not None:
        from vlgen.report.images import ImageFiles

        image_files = ImageFiles(_caption_images(pred, items, images_dir))
    scores = compute_caption_metrics(
        [it.prediction for it in items],
        _references_or_none(pred, items),
        metrics=groups,
        images=image_files,
        clip_model=clip_model,
        bertscore_model=bertscore_model,
        bertscore_num_layers=bertscore_layers,
        combined_weights=weights,
        device=device,
        progress=True,
    )
    scores.settings["input"] = str(pred)
    if data is not None:
        scores.settings["data"] = {"dir": str(data), "split": split, "caption_column": caption_column}
    if images_dir is not None:
        scores.settings["images"] = str(images_dir)
    return items, scores


def _fmt(v, digits: int = 4) -> str:
    from vlgen.report.html import format_number

    return "-" if v is None else format_number(v, digits) if isinstance(v, float) else str(v)


@app.command("captions")
def captions(
    pred: Path = typer.Argument(
        ...,
        help="Predictions JSONL: 'prediction' + 'references' per line, or with --data "
        "'file_name' + 'caption' (as `vlgen caption` writes).",
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Dataset folder (imagefolder), WebDataset shards or parquet to take references from (joined by "
        "file_name = sample key).",
    ),
    split: str | None = typer.Option(None, "--split", help="Only join to this split of --data (e.g. test)."),
    caption_column: str = typer.Option(
        "text",
        "--caption-column",
        help="Reference column in --data's metadata or parquet (text, else txt/caption); shards: .txt, else .json's "
        "caption.",
    ),
    json_: bool = typer.Option(False, "--json", help="Print one JSON object to stdout instead of a table."),
    metrics: str = typer.Option("all", "--metrics", help=_METRICS_HELP),
    bertscore_model: str | None = typer.Option(
        None,
        "--bertscore-model",
        help="Local dir, hub id or 'minilm' (packaged all-MiniLM-L6-v2). Default: roberta-large if "
        "available, else the packaged MiniLM (recorded in settings).",
    ),
    bertscore_layers: int | None = typer.Option(None, "--bertscore-layers", help="Layer to use (default: per model)."),
    combined_weights: str = typer.Option(_COMBINED_WEIGHTS, "--combined-weights", help="W_BERT,W_BLEU for `combined`."),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Write metrics.json, per-item scores, examples, report.html."
    ),
    rank_by: str | None = typer.Option(None, "--rank-by", help="Metric for best/worst examples (default combined)."),
    top_k: int = typer.Option(5, "--top-k", min=1, help="How many best and worst examples."),
    device: str = typer.Option("cpu", "--device", help="Device for BERTScore / sentence embeddings / CLIP."),
    clip_model: str | None = typer.Option(
        None,
        "--clip-model",
        help="CLIP model dir or hub id (e.g. openai/clip-vit-base-patch32): adds CLIPScore, reference-free, and "
        "RefCLIPScore where references exist (Hessel et al. 2021; not CLIP-T of `evaluate images`). Images "
        "come from --data or --images.",
    ),
    images_dir: Path | None = typer.Option(
        None,
        "--images",
        help="Folder the lines' 'file_name' is relative to (CLIPScore without --data; lines may then lack "
        "'references').",
    ),
) -> None:
    """Score predictions against references: BLEU-1..4, METEOR, ROUGE-L, CIDEr, SPICE, sacreBLEU, ROUGE-1/2,
    BERTScore, combined (0.65 BERTScore + 0.35 BLEU-4) and prompt similarity; with --clip-model also CLIPScore
    (no references needed) and RefCLIPScore."""
    from vlgen.hub import name_model_options

    name_model_options(bertscore="--bertscore-model", clip="--clip-model")
    if images_dir is not None and clip_model is None:
        raise ConfigError("--images is for CLIPScore: pass --clip-model too")
    if out_dir is not None:  # before scoring (BERTScore can take minutes), not after
        from vlgen.fileio import check_output_dir

        check_output_dir(out_dir, "--out")
    items, scores = _score_file(
        pred, data=data, split=split, caption_column=caption_column, metrics=metrics, bertscore_model=bertscore_model,
        bertscore_layers=bertscore_layers, weights=_weights(combined_weights), device=device, clip_model=clip_model,
        images_dir=images_dir,
    )  # fmt: skip
    if out_dir is not None:
        from vlgen.report.captions import write_caption_report

        files = write_caption_report(out_dir, items, scores, rank_by=rank_by, k=top_k, source=str(pred))
        err.print(f"wrote {files['report']} (and metrics.json, per_item.jsonl, examples, lengths.png)")
    if json_:
        out.print(json.dumps(scores.to_json(), ensure_ascii=False), markup=False, highlight=False)
        return
    table = Table(title=f"{pred.name}: {scores.n} items")
    table.add_column("metric")
    table.add_column("score", justify="right")
    table.add_column("note", style="dim")
    unavailable = scores.settings.get("unavailable", {})
    for key, value in scores.to_json().items():
        if key not in ("n", "settings"):
            table.add_row(key, _fmt(value), "" if value is not None else unavailable.get(key, ""))
    out.print(table)
    bs = scores.settings.get("bertscore")
    if bs:
        out.print(f"BERTScore model: {bs['name']} (layer {bs['num_layers']}, {bs['source']})", markup=False)
    cs = scores.settings.get("clipscore")
    if cs:
        out.print(f"CLIPScore model: {cs['model']} ({cs['source']}; {cs['w']} * max(cos, 0), text prefixed "
                  f"{cs['prefix']!r})", markup=False)  # fmt: skip


@app.command("compare")
def compare(
    a: Path = typer.Argument(..., help="Baseline: a metrics.json, or a predictions JSONL to score."),
    b: Path = typer.Argument(..., help="Candidate (e.g. fine-tuned): a metrics.json, or a predictions JSONL."),
    json_: bool = typer.Option(False, "--json", help="Print one JSON object to stdout instead of a table."),
    data: Path | None = typer.Option(None, "--data", help="Dataset folder for predictions given as file_name+caption."),
    split: str | None = typer.Option(None, "--split", help="Only join to this split of --data."),
    caption_column: str = typer.Option("text", "--caption-column", help="Reference column in --data's metadata."),
    metrics: str = typer.Option("all", "--metrics", help=_METRICS_HELP),
    bertscore_model: str | None = typer.Option(
        None, "--bertscore-model", help="BERTScore model for predictions files (as `evaluate captions`)."
    ),
    bertscore_layers: int | None = typer.Option(None, "--bertscore-layers", help="Layer to use (default: per model)."),
    combined_weights: str = typer.Option(_COMBINED_WEIGHTS, "--combined-weights", help="W_BERT,W_BLEU for `combined`."),
    device: str = typer.Option("cpu", "--device", help="Device for BERTScore / sentence embeddings."),
) -> None:
    """Each metric for A and B, the change and the relative change (as in the write-ups' Table 1)."""
    from vlgen.hub import name_model_options

    name_model_options(bertscore="--bertscore-model")
    from vlgen.metrics import METRIC_KEYS, compare_scores
    from vlgen.report.predictions import read_metrics_json

    sides = []
    for path in (a, b):
        loaded = read_metrics_json(path)
        if loaded is None:
            _, scores = _score_file(
                path, data=data, split=split, caption_column=caption_column, metrics=metrics,
                bertscore_model=bertscore_model, bertscore_layers=bertscore_layers,
                weights=_weights(combined_weights), device=device,
            )  # fmt: skip
            loaded = scores.to_json()
        sides.append(loaded)
    # scores from different BERTScore / CLIP models are not comparable: say so
    for key, group, field in (("BERTScore", "bertscore", "name"), ("CLIPScore", "clipscore", "model")):
        ma, mb = ((s.get("settings", {}).get(group) or {}).get(field) for s in sides)
        if ma and mb and ma != mb:
            err.print(f"warning: {key} of A used {ma}, of B {mb}; their {key} values are not comparable")
    rows = compare_scores(sides[0], sides[1], keys=[*METRIC_KEYS, "n"])
    if json_:
        obj = {"a": str(a), "b": str(b), "metrics": rows}
        out.print(json.dumps(obj, ensure_ascii=False), markup=False, highlight=False)
        return
    label_a, label_b = (
        (a.name, b.name) if a.name != b.name else (f"{a.parent.name}/{a.name}", f"{b.parent.name}/{b.name}")
    )
    table = Table(title=f"A = {label_a}   B = {label_b}")
    for name in ("metric", "A", "B", "change", "relative"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for r in rows:
        if r["a"] is None and r["b"] is None:
            continue
        rel = "-" if r["relative_change"] is None else f"{r['relative_change']:+.0%}"
        change = "-" if r["change"] is None else ("+" if r["change"] >= 0 else "") + _fmt(r["change"])
        table.add_row(r["metric"], _fmt(r["a"]), _fmt(r["b"]), change, rel)
    out.print(table)


def _first_clause(reason: str) -> str:
    """The table's short note; the whole reason is printed above it and kept in settings."""
    for sep in ("; ", ". "):
        reason = reason.split(sep, 1)[0]
    return reason


@app.command("images")
def images(
    gen_dir: Path = typer.Argument(..., help="Folder of generated images (with `vlgen generate`'s metadata.jsonl)."),
    prompts: Path | None = typer.Option(
        None,
        "--prompts",
        help="Prompts: JSONL with file_name + prompt, or a text file with one prompt per line for the images "
        "in sorted file-name order. Default: GEN_DIR/metadata.jsonl.",
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Dataset folder whose metadata.jsonl gives each file_name's prompt (or `text`)."
    ),
    references: Path | None = typer.Option(
        None, "--references", help="Folder of reference images (CLIP-I, DINO, Gram, FID, KID)."
    ),
    json_: bool = typer.Option(False, "--json", help="Print one JSON object to stdout instead of a table."),
    metrics: str = typer.Option(
        "all", "--metrics", help="Comma-separated: CLIP-T, CLIP-I, DINO, Gram, FID, KID, or all."
    ),
    clip_model: str | None = typer.Option(
        None, "--clip-model", help=f"CLIP model dir or hub id [default: {DEFAULT_MODELS['clip']}]."
    ),
    dino_model: str | None = typer.Option(
        None, "--dino-model", help=f"DINO ViT dir or hub id [default: {DEFAULT_MODELS['dino']}]."
    ),
    vgg_weights: Path | None = typer.Option(
        None,
        "--vgg-weights",
        help="VGG19 for Gram: a state-dict file, or a directory from `vlgen tiny vgg19 DIR` (random weights, "
        "offline) [default: torchvision's ImageNet VGG19].",
    ),
    gram_layers: str = typer.Option(
        ",".join(VGG19_STYLE_LAYERS), "--gram-layers", help="VGG layers for Gram (Gatys et al. 2016 style layers)."
    ),
    gram_size: int = typer.Option(
        DEFAULT_GRAM_IMAGE_SIZE, "--gram-size", min=16, help="Shorter side (then centre crop) for VGG."
    ),
    inception_weights: Path | None = typer.Option(
        None,
        "--inception-weights",
        help="Local pt_inception-2015-12-05 / torch-fidelity Inception weights for FID/KID.",
    ),
    fid_min_images: int = typer.Option(
        DEFAULT_FID_MIN_IMAGES,
        "--fid-min-images",
        min=2,
        help="Refuse FID when either set is smaller (2048 = feature dimension).",
    ),
    kid_subsets: int = typer.Option(
        DEFAULT_KID_SUBSETS, "--kid-subsets", min=1, help="Random subsets KID is averaged over."
    ),
    kid_subset_size: int = typer.Option(
        DEFAULT_KID_SUBSET_SIZE, "--kid-subset-size", min=2, help="Clipped to the smaller set."
    ),
    out_dir: Path | None = typer.Option(None, "--out", help="Write report.html, metrics.json, per_image.jsonl."),
    device: str = typer.Option("cpu", "--device", help="Device for the metric models (cpu, cuda ...)."),
    batch_size: int = typer.Option(
        DEFAULT_BATCH_SIZE, "--batch-size", min=1, help="Images per metric-model forward pass."
    ),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="Seed of KID's subset sampling."),
) -> None:
    """CLIP-T, CLIP-I, DINO, Gram style distance, FID and KID of generated images (see vlgen.metrics.image)."""
    from vlgen.hub import name_model_options

    name_model_options(clip="--clip-model", dino="--dino-model")
    from vlgen.metrics.image import IMAGE_METRIC_KEYS, LOWER_IS_BETTER, compute_image_metrics, parse_image_metrics
    from vlgen.report.images import ImageFiles, list_images, probe_all, read_generated

    wanted = parse_image_metrics(metrics)
    if out_dir is not None:  # before the models load and score, not after
        from vlgen.fileio import check_output_dir

        check_output_dir(out_dir, "--out")
    layers = tuple(s.strip() for s in gram_layers.split(",") if s.strip())
    gen = read_generated(gen_dir, prompts=prompts, data=data)
    ref_paths = [references / n for n in list_images(references, "reference images")] if references else None
    probe_all(gen.paths + (ref_paths or []))
    scores = compute_image_metrics(
        ImageFiles(gen.paths), gen.prompts, ImageFiles(ref_paths) if ref_paths else None, metrics=wanted,
        clip_model=clip_model, dino_model=dino_model, vgg_weights=vgg_weights, gram_layers=layers,
        gram_image_size=gram_size, inception_weights=inception_weights, fid_min_images=fid_min_images,
        kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seed=seed, device=device, batch_size=batch_size,
    )  # fmt: skip
    scores.settings["inputs"] = {
        "generated": str(gen_dir),
        "prompts": gen.prompt_source,
        "references": str(references) if references else None,
    }
    unavailable = scores.settings["unavailable"]
    for key, why in unavailable.items():
        if key in wanted:
            err.print(f"note: {key} not computed: {why}", markup=False, soft_wrap=True)
    if all(scores.corpus[k] is None for k in wanted):  # nothing to report: a failure, not a table of dashes
        names = ", ".join(wanted)
        raise VlgenError(f"none of the requested metrics ({names}) could be computed; the reasons are above")
    if out_dir is not None:
        from vlgen.report.images import write_image_report

        files = write_image_report(out_dir, gen, ref_paths, scores)
        err.print(f"wrote {files['report']} (and metrics.json, per_image.jsonl, thumbs/)", markup=False)
    obj = scores.to_json()
    if json_:
        out.print(json.dumps(obj, ensure_ascii=False), markup=False, highlight=False)
        return
    table = Table(title=f"{gen_dir}: {scores.n_generated} generated, {scores.n_references} references")
    for name, justify in (("metric", "left"), ("score", "right"), ("better", "left"), ("model", "left")):
        table.add_column(name, justify=justify)
    table.add_column("note", style="dim")
    for key in IMAGE_METRIC_KEYS:
        s = scores.settings.get(key, {})
        value = obj[key]
        text = _fmt(value, 6 if key in ("Gram", "KID") else 4)
        if key == "KID" and value is not None:
            text += f" ± {s['std']:.2g} ({s['subsets']}x{s['subset_size']})"
        better = "lower" if key in LOWER_IS_BETTER else "higher"
        note = "" if value is not None else _first_clause(unavailable.get(key, ""))
        table.add_row(key, text, better, str(s.get("model") or s.get("weights") or ""), note)
    out.print(table)

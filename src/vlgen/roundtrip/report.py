"""OUT/report.html of a round trip: per captioner its scores, and a grid a person reads row by row -
prompt (or original image) | recovered caption | generated image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlgen.report import html
from vlgen.roundtrip.config import RoundtripConfig

MAX_SHOWN = 100  # grid rows per captioner; metadata.jsonl always has every image


def _scores_table(metrics: dict[str, Any]) -> html.Raw:
    names = list(metrics["captioners"])
    keys = list(next(iter(metrics["captioners"].values())))
    unavailable = metrics["settings"].get("unavailable", {})
    rows = [
        [k, *(_fmt(k, metrics["captioners"][n][k]) for n in names), "lower" if k == "Gram" else "higher",
         unavailable.get(k, "")]
        for k in keys
    ]  # fmt: skip
    return html.table(["metric", *names, "better", "note"], rows, numeric=range(1, len(names) + 1))


def _fmt(key: str, value: float | None) -> str:
    # Gram distances of normalised Gram matrices are ~1e-4..1e-7: fixed decimals would show 0.0000.
    return f"{value:.4g}" if key == "Gram" and value is not None else html.fmt(value)


def _per_item_note(scores: dict[str, float]) -> str:
    return "; ".join(f"{k} {v:.6g}" if k == "Gram" else f"{k} {v:.3f}" for k, v in scores.items())


def write_report(
    path: Path, direction: str, cfg: RoundtripConfig, rows: list[dict], metrics: dict, per_item: dict[str, list[dict]]
) -> Path:
    out = path.parent
    g = cfg.generation
    lora = f" + LoRA {g.lora}" if g.lora else ""
    if direction == "prompts":
        subtitle = (f"prompt -> image ({g.base}{lora}) -> caption, {metrics['n']} prompts; "
                    "each captioner's recovered captions scored against the prompts")  # fmt: skip
    else:
        subtitle = (f"image -> caption -> image ({g.base}{lora}), {metrics['n']} images; "
                    "each regeneration scored against its own original")  # fmt: skip
    body = [
        html.section("Scores by captioner", _scores_table(metrics), note="metric keys as `vlgen evaluate` names them")
    ]
    for k, ref in enumerate(cfg.captioners):
        items = per_item.get(ref, [])
        if direction == "prompts":
            grid = [
                [html.Raw(f"<b>{html.esc(r['prompt'])}</b><br><span class='muted'>seed {r['seed']}</span>"),
                 html.img(r["file_name"], alt=r["prompt"]), r["captions"][ref],
                 _per_item_note(items[i]) if i < len(items) else ""]
                for i, r in enumerate(rows[:MAX_SHOWN])
            ]  # fmt: skip
            headers = ["prompt", "generated image", "recovered caption", "scores"]
        else:
            mine = [r for r in rows if r["captioner"] == ref]
            grid = []
            for i, r in enumerate(mine[:MAX_SHOWN]):
                from vlgen.data import load_image

                original = html.img(
                    html.image_data_uri(load_image(Path(cfg.source or ".") / r["source_file_name"]), max_side=128)
                )
                grid.append([
                    html.Raw(f"{original}<br><span class='muted'>{html.esc(r['source_file_name'])}</span>"),
                    html.Raw(f"{html.esc(r['caption'])}<br><span class='muted'>prompt: {html.esc(r['prompt'])}</span>"),
                    html.Raw(f"{html.img(r['file_name'], alt=r['prompt'])}<br><span class='muted'>seed {r['seed']}"
                             "</span>"),
                    _per_item_note(items[i]) if i < len(items) else "",
                ])  # fmt: skip
            headers = ["original", "recovered caption", "regenerated image", "scores"]
        shown = f" (first {MAX_SHOWN} of {len(rows)})" if len(grid) == MAX_SHOWN and len(rows) > MAX_SHOWN else ""
        body.append(html.section(f"{k + 1}. {ref}{shown}", html.table(headers, grid)))
    body.append(html.section("Settings", html.pre(json.dumps(metrics["settings"], indent=2, ensure_ascii=False))))
    return html.write_page(out / path.name, f"Round trip ({direction})", *body, subtitle=subtitle)

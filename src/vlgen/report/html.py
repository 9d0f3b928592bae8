"""A minimal HTML kit for vlgen's reports: one page, inline CSS, no JavaScript, no external requests.

Every piece returns a string; every text value goes through `esc` (captions are user data). Images are
either files written beside the page (`img("thumbs/3.jpg")`, the page stays small) or embedded
(`img(data_uri(png_bytes, "image/png"))`, one file to mail around)::

    from vlgen.report import html
    body = html.section("Scores", html.table(["metric", "value"], [["BLEU-4", html.fmt(0.3123)]]))
    html.write_page(out / "report.html", "My run", body)
"""

from __future__ import annotations

import base64
import html as _html
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from vlgen.fileio import atomic_write_text

CSS = """
:root { --fg:#1d2330; --muted:#667085; --line:#e4e7ec; --bg:#fff; --soft:#f6f7f9; --accent:#3056d3;
        --good:#127a3a; --bad:#b42318; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); }
main { max-width: 1180px; margin: 0 auto; padding: 28px 24px 64px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 36px 0 10px; }
.subtitle { color: var(--muted); margin: 0 0 20px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; }
th, td { text-align: left; vertical-align: top; padding: 7px 10px; border-bottom: 1px solid var(--line); }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:hover td { background: #fafbfc; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; background: var(--soft); }
.card .k { color: var(--muted); font-size: 12px; } .card .v { font-size: 20px; font-weight: 600; }
.muted { color: var(--muted); } .good { color: var(--good); } .bad { color: var(--bad); }
ul.refs { margin: 0; padding-left: 18px; color: var(--muted); }
img.thumb { width: 128px; height: 128px; object-fit: cover; border-radius: 6px; border: 1px solid var(--line); }
img.figure { max-width: 100%; border: 1px solid var(--line); border-radius: 6px; }
details { margin: 10px 0; } summary { cursor: pointer; color: var(--accent); }
pre { background: var(--soft); padding: 12px; border-radius: 6px; overflow-x: auto; font-size: 12px; }
"""


class Raw(str):
    """A string that is already HTML (not escaped again by `table`/`section`)."""


def esc(value: Any) -> str:
    return value if isinstance(value, Raw) else _html.escape(str(value), quote=True)


def format_number(value: float, digits: int = 4) -> str:
    """`digits` decimals, or 3 significant digits in scientific notation where the decimals would show fewer
    than 2 (2.6500783447471926e-17 -> "2.65e-17", not "0.0000"; 0.00123 -> "0.0012"). Zero stays "0.0000"."""
    if value != 0 and abs(value) < 10 ** (1 - digits):  # nan/inf compare False: they print as nan/inf
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers via `format_number`, None to an em dash, anything else to str."""
    if value is None:
        return "\u2014"
    if isinstance(value, float):
        return format_number(value, digits)
    return str(value)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_data_uri(image: Any, *, fmt_: str = "JPEG", max_side: int | None = 256) -> str:
    """A PIL image as an embedded data URI (thumbnailed to `max_side`)."""
    im = image.copy()
    if max_side:
        im.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format=fmt_, quality=85)
    return data_uri(buf.getvalue(), f"image/{fmt_.lower()}")


def img(src: str | os.PathLike, alt: str = "", cls: str = "thumb") -> Raw:
    """An <img>; `src` is a path relative to the page (posix) or a data URI."""
    src_s = src if isinstance(src, str) else Path(src).as_posix()
    return Raw(f'<img class="{esc(cls)}" src="{esc(src_s)}" alt="{esc(alt)}" loading="lazy">')


def ul(items: Iterable[Any], cls: str = "refs") -> Raw:
    return Raw(f'<ul class="{esc(cls)}">' + "".join(f"<li>{esc(x)}</li>" for x in items) + "</ul>")


def table(headers: Sequence[Any], rows: Iterable[Sequence[Any]], *, numeric: Iterable[int] = ()) -> Raw:
    """A table; cells are escaped unless they are `Raw`; columns in `numeric` are right-aligned."""
    num = set(numeric)

    def cell(tag: str, j: int, v: Any) -> str:
        return f'<{tag} class="num">{esc(v)}</{tag}>' if j in num else f"<{tag}>{esc(v)}</{tag}>"

    head = "<tr>" + "".join(cell("th", j, h) for j, h in enumerate(headers)) + "</tr>"
    body = "".join("<tr>" + "".join(cell("td", j, v) for j, v in enumerate(r)) + "</tr>" for r in rows)
    return Raw(f"<table><thead>{head}</thead><tbody>{body}</tbody></table>")


def cards(items: Iterable[tuple[str, Any]]) -> Raw:
    """Big-number tiles (key, value) for the headline scores."""
    tiles = "".join(
        f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div></div>' for k, v in items
    )
    return Raw(f'<div class="cards">{tiles}</div>')


def section(title: str, *content: Any, note: str | None = None) -> Raw:
    parts = [f"<h2>{esc(title)}</h2>"]
    if note:
        parts.append(f'<p class="muted">{esc(note)}</p>')
    parts += [esc(c) for c in content]
    return Raw("<section>" + "".join(parts) + "</section>")


def details(summary: str, content: Any) -> Raw:
    return Raw(f"<details><summary>{esc(summary)}</summary>{esc(content)}</details>")


def pre(text: str) -> Raw:
    return Raw(f"<pre>{esc(text)}</pre>")


def page(title: str, *body: Any, subtitle: str | None = None) -> str:
    """A complete HTML document."""
    sub = f'<p class="subtitle">{esc(subtitle)}</p>' if subtitle else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><main><h1>{esc(title)}</h1>{sub}{''.join(esc(b) for b in body)}</main></body></html>\n"
    )


def write_page(path: str | os.PathLike, title: str, *body: Any, subtitle: str | None = None) -> Path:
    return atomic_write_text(path, page(title, *body, subtitle=subtitle))

"""The page at `/`: upload an image -> its caption; type a prompt -> the image. Plain HTML + a little JS.

No external requests: the CSS is the report's (`vlgen.report.html.CSS`), the script is inline, and the
Content-Security-Policy only allows this origin plus the exact inline script and style (by hash), so the page
cannot load anything else even by mistake. Captions and errors are inserted with `textContent`, never as HTML.
"""

from __future__ import annotations

import base64
import hashlib

from vlgen.report.html import CSS as REPORT_CSS

PAGE_CSS = (
    REPORT_CSS
    + """
form { border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; background: var(--soft); }
label { display: inline-block; margin: 4px 14px 4px 0; }
input[type=number] { width: 80px; } textarea { width: 100%; min-height: 56px; font: inherit; }
button { font: inherit; padding: 5px 14px; border-radius: 6px; border: 1px solid var(--accent);
         background: var(--accent); color: #fff; cursor: pointer; } button:disabled { opacity: .5; }
.result { margin-top: 12px; min-height: 24px; } .caption { font-size: 18px; font-weight: 600; }
img.out { max-width: 384px; max-height: 384px; border: 1px solid var(--line); border-radius: 6px; display: block; }
"""
)

SCRIPT = r"""
"use strict";
const $ = (id) => document.getElementById(id);
function headers() {
  const key = $("api-key").value.trim();
  return key ? {"Authorization": "Bearer " + key} : {};
}
async function errorText(resp) {
  try { const body = await resp.json(); return resp.status + ": " + body.error.message; }
  catch (e) { return resp.status + " " + resp.statusText; }
}
function show(el, text, cls) { el.textContent = text; el.className = "result " + (cls || ""); }

$("caption-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const file = $("file").files[0], out = $("caption-result"), btn = $("caption-button");
  if (!file) { show(out, "choose an image first", "bad"); return; }
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file); preview.hidden = false;
  const form = new FormData();
  form.append("file", file);
  form.append("num_beams", $("num-beams").value);
  form.append("max_new_tokens", $("max-new-tokens").value);
  btn.disabled = true; show(out, "captioning\u2026", "muted");
  try {
    const resp = await fetch("v1/caption", {method: "POST", body: form, headers: headers()});
    if (!resp.ok) { show(out, await errorText(resp), "bad"); return; }
    const body = await resp.json();
    show(out, body.captions[0].caption, "caption");
  } catch (e) { show(out, "request failed: " + e, "bad"); }
  finally { btn.disabled = false; }
});

$("generate-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = $("generate-result"), img = $("generated"), btn = $("generate-button");
  const req = {prompt: $("prompt").value, num_inference_steps: Number($("steps").value),
               guidance_scale: Number($("guidance").value), response_format: "png"};
  if ($("seed").value !== "") req.seed = Number($("seed").value);
  btn.disabled = true; show(out, "generating\u2026", "muted");
  try {
    const resp = await fetch("v1/generate", {method: "POST", body: JSON.stringify(req),
                                             headers: {...headers(), "Content-Type": "application/json"}});
    if (!resp.ok) { show(out, await errorText(resp), "bad"); return; }
    if (img.src) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(await resp.blob()); img.hidden = false;
    show(out, "seed " + resp.headers.get("X-Seed"), "muted");
  } catch (e) { show(out, "request failed: " + e, "bad"); }
  finally { btn.disabled = false; }
});

fetch("health").then((r) => r.json()).then((h) => {
  $("key-row").hidden = !h.auth_required;
  if (!h.generate.enabled) {
    $("generate-button").disabled = true;
    show($("generate-result"), h.generate.how_to_enable, "muted");
  }
  $("status").textContent = "server ok \u00b7 caption model ready \u00b7 text-to-image " +
    (h.generate.enabled ? "ready" : "not enabled");
}).catch(() => { $("status").textContent = "server unreachable"; });
"""

BODY = """
<p class="subtitle" id="status">checking the server\u2026</p>
<p id="key-row" hidden><label>API key <input id="api-key" type="password" autocomplete="off"></label></p>
<h2>Caption an image</h2>
<form id="caption-form">
  <input id="file" type="file" accept="image/*">
  <label>beams <input id="num-beams" type="number" min="1" value="{num_beams}"></label>
  <label>max tokens <input id="max-new-tokens" type="number" min="1" value="{max_new_tokens}"></label>
  <button id="caption-button" type="submit">Caption</button>
  <div><img id="preview" class="out" alt="uploaded image" hidden></div>
  <div id="caption-result" class="result"></div>
</form>
<h2>Generate an image</h2>
<form id="generate-form">
  <textarea id="prompt" placeholder="a photo of a corgi on the beach" required></textarea>
  <label>steps <input id="steps" type="number" min="1" value="{steps}"></label>
  <label>guidance <input id="guidance" type="number" min="0" step="0.5" value="{guidance_scale:g}"></label>
  <label>seed <input id="seed" type="number" min="0" placeholder="random"></label>
  <button id="generate-button" type="submit">Generate</button>
  <div id="generate-result" class="result"></div>
  <img id="generated" class="out" alt="generated image" hidden>
</form>
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


CONTENT_SECURITY_POLICY = (
    "default-src 'none'; "
    f"script-src {_sha256(SCRIPT)}; style-src {_sha256(PAGE_CSS)}; "
    "connect-src 'self'; img-src 'self' blob: data:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def render_page(*, num_beams: int, max_new_tokens: int, steps: int, guidance_scale: float) -> str:
    body = BODY.format(
        num_beams=int(num_beams), max_new_tokens=int(max_new_tokens), steps=int(steps), guidance_scale=guidance_scale
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'  # no /favicon.ico request
        f"<title>vlgen serve</title><style>{PAGE_CSS}</style></head>"
        f"<body><main><h1>vlgen serve</h1>{body}</main><script>{SCRIPT}</script></body></html>\n"
    )

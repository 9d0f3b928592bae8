"""The real `vlgen serve` process (tiny BLIP + tiny SDXL/LoRA): load, batching, limits, malformed input.

Every bad request must get its 4xx in the one error shape, and the server must keep serving afterwards.
"""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image
from servefixtures import MAX_BODY_MB, bomb_png, png_bytes

from vlgen.serving.process import ServerProcess

FAST = {"num_beams": "1", "max_new_tokens": "4"}  # keep the tiny model's decoding short


def _error(r: httpx.Response, status: int, type_: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str)
    assert "Traceback" not in r.text
    if type_:
        assert err["type"] == type_, err
    return err


def _still_serving(server: ServerProcess) -> None:
    assert server.alive()
    r = httpx.post(f"{server.url}/v1/caption", files={"file": ("ok.png", png_bytes())}, data=FAST, timeout=30)
    assert r.status_code == 200, r.text


def test_health_models_and_spec(server: ServerProcess) -> None:
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["generate"]["enabled"] and not health["auth_required"]
    models = httpx.get(f"{server.url}/v1/models").json()["data"]
    assert [m["task"] for m in models] == ["caption", "generate"]
    assert models[0]["family"] == "blip" and models[1]["limits"] == {"num_inference_steps": 4, "side": 128}
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/health", "/v1/models", "/v1/caption", "/v1/generate"} <= set(spec["paths"])
    gen_props = spec["components"]["schemas"]["GenerateRequest"]["properties"]
    assert set(gen_props) >= {"prompt", "seed", "num_inference_steps", "guidance_scale", "lora_scale", "width"}
    assert gen_props["num_inference_steps"]["anyOf"][0]["maximum"] == 4  # the server's own limit is in the spec


def test_caption_one_and_several(server: ServerProcess) -> None:
    r = httpx.post(f"{server.url}/v1/caption", files={"file": ("a.png", png_bytes())}, data=FAST, timeout=30)
    body = r.json()
    assert r.status_code == 200 and body["num_beams"] == 1 and body["max_new_tokens"] == 4
    [item] = body["captions"]
    assert item["file_name"] == "a.png" and isinstance(item["caption"], str) and item["batch_size"] >= 1
    files = [("files", (f"{i}.png", png_bytes((i * 40, 0, 0)), "image/png")) for i in range(3)]
    r = httpx.post(f"{server.url}/v1/caption", files=files, data=FAST, timeout=30)
    assert r.status_code == 200 and [c["file_name"] for c in r.json()["captions"]] == ["0.png", "1.png", "2.png"]
    # all three images of one request are one batch (max_batch_size 8)
    assert {c["batch_size"] for c in r.json()["captions"]} == {3}


def test_200_concurrent_captions_are_batched_with_bounded_memory(server: ServerProcess) -> None:
    images = [png_bytes((i * 13 % 256, i * 7 % 256, 90), size=(48, 40)) for i in range(16)]

    def one(i: int, client: httpx.Client) -> httpx.Response:
        return client.post("/v1/caption", files={"file": (f"{i}.png", images[i % 16])}, data=FAST)

    with httpx.Client(base_url=server.url, timeout=60) as client, ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: one(i, client), range(32)))  # warm-up: allocator pools, lazy inits
        rss_before = server.rss_kb()
        before = client.get("/health").json()["caption"]
        responses = list(pool.map(lambda i: one(i, client), range(200)))
        rss_after = server.rss_kb()
        after = client.get("/health").json()["caption"]
    assert [r.status_code for r in responses] == [200] * 200, [r.text for r in responses if r.status_code != 200][:3]
    sizes = [r.json()["captions"][0]["batch_size"] for r in responses]
    assert max(sizes) > 1 and sum(s > 1 for s in sizes) > 100, sizes  # most requests shared a batch
    assert after["images"] - before["images"] == 200
    assert after["batches"] - before["batches"] < 200 / 2  # mean batch size > 2
    assert after["queued"] == 0
    growth_mb = (rss_after - rss_before) / 1024
    assert growth_mb < 100, f"RSS grew by {growth_mb:.0f} MB over 200 requests"


def _oversize_png() -> bytes:
    """A real PNG a bit larger than the body limit (random pixels do not compress)."""
    import numpy as np

    side = int((MAX_BODY_MB * 1024 * 1024 * 1.2 / 3) ** 0.5) + 1
    arr = np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=0)
    return buf.getvalue()


def _truncated_png() -> bytes:
    import numpy as np

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


CAPTION_CASES = {
    "no file": ({"files": {"num_beams": (None, "1")}}, 422, "invalid_request_error", "no image"),
    "urlencoded form": ({"data": FAST}, 415, "unsupported_media_type", "multipart/form-data"),
    "not an image": ({"files": {"file": ("a.png", b"hello, not a picture")}}, 422, "invalid_image", "not an image"),
    "empty file": ({"files": {"file": ("a.png", b"")}}, 422, "invalid_image", "empty"),
    "truncated": ({"files": {"file": ("t.png", _truncated_png())}}, 422, "invalid_image", "truncated"),
    "50000x50000 bomb": ({"files": {"file": ("b.png", bomb_png())}}, 422, "invalid_image", "pixels"),
    "num_beams=0": ({"files": {"file": ("a.png", png_bytes())}, "data": {"num_beams": "0"}}, 422, None, "num_beams"),
    "num_beams=abc": ({"files": {"file": ("a.png", png_bytes())}, "data": {"num_beams": "abc"}}, 422, None, "integer"),
    "max_new_tokens=10000": (
        {"files": {"file": ("a.png", png_bytes())}, "data": {"max_new_tokens": "10000"}},
        422,
        None,
        "max_new_tokens",
    ),
    "json instead of multipart": ({"json": {"file": "x"}}, 415, "unsupported_media_type", "multipart/form-data"),
    "no content type": ({"content": b"raw bytes"}, 415, "unsupported_media_type", "no Content-Type"),
    "oversize body": ({"files": {"file": ("big.png", _oversize_png())}}, 413, "payload_too_large", "--max-body-mb"),
}


@pytest.mark.parametrize("case", list(CAPTION_CASES))
def test_malformed_caption_requests(server: ServerProcess, case: str) -> None:
    kwargs, status, type_, needle = CAPTION_CASES[case]
    r = httpx.post(f"{server.url}/v1/caption", timeout=30, **kwargs)
    err = _error(r, status, type_)
    assert needle in err["message"], err
    _still_serving(server)


def test_chunked_body_over_the_limit_is_413(server: ServerProcess) -> None:
    """No Content-Length: the limit is enforced while the body streams in."""
    boundary = "vlgenboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def body():
        yield head
        for _ in range(MAX_BODY_MB * 4 + 1):
            yield b"\0" * 256 * 1024

    r = httpx.post(
        f"{server.url}/v1/caption",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    _error(r, 413, "payload_too_large")
    _still_serving(server)


GENERATE_CASES = {
    "bad json": ({"content": b'{"prompt": ', "headers": {"Content-Type": "application/json"}}, 422, "JSON"),
    "text/plain": ({"content": b"a cat", "headers": {"Content-Type": "text/plain"}}, 415, "application/json"),
    "no prompt": ({"json": {"seed": 1}}, 422, "prompt"),
    "blank prompt": ({"json": {"prompt": "   "}}, 422, "blank"),
    "negative steps": ({"json": {"prompt": "a", "num_inference_steps": -1}}, 422, "num_inference_steps"),
    "too many steps": ({"json": {"prompt": "a", "num_inference_steps": 5}}, 422, "num_inference_steps"),
    "width not /8": ({"json": {"prompt": "a", "width": 100}}, 422, "width"),
    "width too big": ({"json": {"prompt": "a", "width": 4096}}, 422, "width"),
    "negative seed": ({"json": {"prompt": "a", "seed": -5}}, 422, "seed"),
    # strict JSON types: no silent true -> 1 or "512" -> 512
    "steps true": ({"json": {"prompt": "a", "num_inference_steps": True}}, 422, "num_inference_steps"),
    "width string": ({"json": {"prompt": "a", "width": "512"}}, 422, "width"),
    "seed float": ({"json": {"prompt": "a", "seed": 1.5}}, 422, "seed"),
    "lora_scale 10": ({"json": {"prompt": "a", "lora_scale": 10}}, 422, "lora_scale"),
    "unknown field": ({"json": {"prompt": "a", "n": 4}}, 422, "n"),
    "bad response_format": ({"json": {"prompt": "a", "response_format": "jpeg"}}, 422, "response_format"),
    "array body": ({"json": ["a cat"]}, 422, "dictionary"),
    "oversize": ({"json": {"prompt": "a" * (MAX_BODY_MB * 1024 * 1024 + 10)}}, 413, "--max-body-mb"),
}


@pytest.mark.parametrize("case", list(GENERATE_CASES))
def test_malformed_generate_requests(server: ServerProcess, case: str) -> None:
    kwargs, status, needle = GENERATE_CASES[case]
    r = httpx.post(f"{server.url}/v1/generate", timeout=30, **kwargs)
    err = _error(r, status)
    assert needle in err["message"], err
    assert server.alive()


def test_unknown_paths_and_methods_use_the_error_shape(server: ServerProcess) -> None:
    _error(httpx.get(f"{server.url}/v2/nothing"), 404, "not_found_error")
    _error(httpx.get(f"{server.url}/v1/caption"), 405, "method_not_allowed")
    assert httpx.get(f"{server.url}/docs").status_code == 404  # no CDN-loading Swagger UI


def _generate(server: ServerProcess, **body) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/generate", json={"prompt": "a red cube", "num_inference_steps": 2, **body}, timeout=120
    )


def test_generate_png_and_b64_are_the_same_seeded_image(server: ServerProcess) -> None:
    png = _generate(server, seed=7)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.headers["x-seed"] == "7"
    im = Image.open(io.BytesIO(png.content))
    assert im.size == (64, 64)  # tiny SDXL's native size
    js = _generate(server, seed=7, response_format="b64_json").json()
    assert js["seed"] == 7 and js["lora_scale"] == 1.0 and (js["width"], js["height"]) == (64, 64)
    assert base64.b64decode(js["data"][0]["b64_json"]) == png.content  # same seed -> same bytes
    other = _generate(server, seed=8, width=96, height=72)
    assert Image.open(io.BytesIO(other.content)).size == (96, 72)


def test_generate_random_seed_is_reported(server: ServerProcess) -> None:
    r = _generate(server)
    seed = int(r.headers["x-seed"])
    assert _generate(server, seed=seed).content == r.content


def test_lora_scale_changes_the_image(server: ServerProcess) -> None:
    base = _generate(server, seed=3, lora_scale=0.0).content
    full = _generate(server, seed=3, lora_scale=1.0).content
    default = _generate(server, seed=3).content
    assert base != full and default == full


@pytest.mark.parametrize(
    "settings",
    [
        {"seed": 11, "lora_scale": 0.5},
        {"seed": 12, "negative_prompt": "blurry", "guidance_scale": 3.0, "width": 96, "height": 72},
    ],
    ids=["lora-0.5", "defaults-scale-negative-size"],
)
def test_generate_equals_vlgen_generate(server: ServerProcess, tiny_sdxl_dir, tiny_lora_dir, tmp_path, settings):
    """The server and `vlgen generate` share vlgen.t2i.generate: same settings, same pixels (and PNG bytes)."""
    from vlgen.cli import main

    served = _generate(server, prompt="a blue sphere", num_inference_steps=2, **settings)
    assert served.status_code == 200, served.text
    args = ["generate", "a blue sphere", "--out", str(tmp_path), "--base", str(tiny_sdxl_dir), "--device", "cpu"]
    args += ["--lora", str(tiny_lora_dir), "--num-inference-steps", "2"]
    for name, value in settings.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    assert main(args) == 0
    cli = Image.open(tmp_path / "0000.png")
    img = Image.open(io.BytesIO(served.content))
    assert (img.size, img.mode) == (cli.size, cli.mode)
    assert img.tobytes() == cli.tobytes()
    assert served.content == (tmp_path / "0000.png").read_bytes()

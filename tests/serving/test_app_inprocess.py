"""The app in-process with a fake captioner: overload (503 + Retry-After), timeouts (504) and crashes (500)
answer in the one error shape, and the server keeps serving. (The real process is tested in test_server.py.)"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
from servefixtures import png_bytes

from vlgen.serving.app import create_app
from vlgen.serving.settings import ServeSettings


class FakeCaptioner:
    family = "fake"

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.delay = delay
        self.fail = fail
        self.calls = 0
        self.lock = threading.Lock()

    def generate(self, images, num_beams=1, max_new_tokens=30):
        with self.lock:
            self.calls += 1
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("secret internal detail")
        return [f"a {im.width}x{im.height} image" for im in images]


async def _serve(app, fn):
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
            return await fn(client)


def _caption(client: httpx.AsyncClient, n: int = 1):
    files = [("files", (f"{i}.png", png_bytes(), "image/png")) for i in range(n)]
    return client.post("/v1/caption", files=files, data={"num_beams": "1"})


def test_full_queue_answers_503_with_retry_after() -> None:
    settings = ServeSettings(max_batch_size=2, max_queue=4, max_wait_ms=0)
    app = create_app(settings, captioner=FakeCaptioner(delay=0.3))

    async def go(client):
        return await asyncio.gather(*(_caption(client, 2) for _ in range(6)))

    responses = asyncio.run(_serve(app, go))
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 503 in codes, codes
    for r in responses:
        if r.status_code == 503:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["error"]["type"] == "overloaded"


def test_slow_model_answers_504_and_recovers() -> None:
    captioner = FakeCaptioner(delay=0.5)
    app = create_app(ServeSettings(timeout_s=0.1), captioner=captioner)

    async def go(client):
        slow = await _caption(client)
        captioner.delay = 0.0
        await asyncio.sleep(0.6)  # the abandoned batch still holds the (single) model thread
        return slow, await _caption(client)

    slow, ok = asyncio.run(_serve(app, go))
    assert slow.status_code == 504 and slow.json()["error"]["type"] == "timeout"
    assert ok.status_code == 200 and ok.json()["captions"][0]["caption"] == "a 32x24 image"


def test_model_crash_is_a_500_without_details() -> None:
    app = create_app(ServeSettings(), captioner=FakeCaptioner(fail=True))
    r = asyncio.run(_serve(app, _caption))
    assert r.status_code == 500
    assert r.json() == {
        "error": {"message": "captioning failed (the error is in the server log)", "type": "internal_error"}
    }
    assert "secret" not in r.text and "Traceback" not in r.text


def test_too_many_files_is_422() -> None:
    app = create_app(ServeSettings(max_files=3), captioner=FakeCaptioner())
    r = asyncio.run(_serve(app, lambda c: _caption(c, 4)))
    assert r.status_code == 422 and r.json()["error"]["param"] == "files"


def test_generate_not_enabled_is_501_with_how_to() -> None:
    app = create_app(ServeSettings(), captioner=FakeCaptioner())
    r = asyncio.run(_serve(app, lambda c: c.post("/v1/generate", json={"prompt": "a cat"})))
    assert r.status_code == 501
    assert r.json()["error"]["type"] == "not_enabled" and "--t2i-base" in r.json()["error"]["message"]


def test_generate_types_are_strict() -> None:
    """`"num_inference_steps": true` and `"width": "512"` were accepted (as 1 and 512): now 422 naming the field
    (validation runs before the 501 of a server without text-to-image)."""
    app = create_app(ServeSettings(), captioner=FakeCaptioner())

    async def go(client):
        bad = [{"num_inference_steps": True}, {"width": "512"}, {"guidance_scale": "5"}, {"prompt": 7}]
        out = [await client.post("/v1/generate", json={"prompt": "a cat", **b}) for b in bad]
        return out, await client.post("/v1/generate", json={"prompt": "a cat", "guidance_scale": 5, "width": 512})

    responses, fine = asyncio.run(_serve(app, go))
    for r, field in zip(responses, ["num_inference_steps", "width", "guidance_scale", "prompt"], strict=True):
        assert r.status_code == 422, r.text
        assert r.json()["error"]["param"] == field and field in r.json()["error"]["message"]
    assert fine.status_code == 501  # an int for a float field is still fine; then: not enabled


class FakeTextToImage:
    """Records what /v1/generate asks of the model; answers a blank image of the asked (or native) size."""

    base, lora, default_size = "fake-sdxl", "fake-lora", 64
    defaults = (30, 5.0)  # (steps, guidance) of the base's family: what a request that leaves them out gets

    def __init__(self) -> None:
        self.calls: list = []

    def generate(self, prompt, params, should_stop=lambda: False):
        from PIL import Image

        self.calls.append((prompt, params))
        return Image.new("RGB", (params.width or self.default_size, params.height or self.default_size))


def test_generate_request_defaults_and_limits_come_from_generation_params() -> None:
    """The body model is built from `GenerationParams` (defaults, request limits) with the server's narrower
    --max-steps/--max-side on top, and a body maps field for field onto the dataclass the model gets."""
    import dataclasses

    from vlgen.t2i.generate import GenerationParams

    t2i = FakeTextToImage()
    app = create_app(ServeSettings(max_steps=50, max_side=512), captioner=FakeCaptioner(), t2i=t2i)
    props = app.openapi()["components"]["schemas"]["GenerateRequest"]["properties"]
    assert set(props) == {f.name for f in dataclasses.fields(GenerationParams)} | {"prompt", "response_format"}
    # None in the schema: "the base family's default", filled in by the server (capped by --max-steps)
    assert GenerationParams.num_inference_steps is None and GenerationParams.guidance_scale is None
    assert "default" not in props["num_inference_steps"] and "default" not in props["guidance_scale"]
    assert props["num_inference_steps"]["anyOf"][0]["maximum"] == 50
    assert props["guidance_scale"]["anyOf"][0] == {"type": "number", "minimum": 0.0, "maximum": 30.0}
    assert props["width"]["anyOf"][0] == {"type": "integer", "minimum": 64, "maximum": 512, "multipleOf": 8}

    async def go(client):
        default = await client.post("/v1/generate", json={"prompt": "a cat", "response_format": "b64_json"})
        given = {"prompt": "a dog", "seed": 3, "num_inference_steps": 2, "guidance_scale": 7, "lora_scale": 0.5,
                 "width": 128, "height": 96, "negative_prompt": "blur", "response_format": "b64_json"}  # fmt: skip
        return default, await client.post("/v1/generate", json=given)

    default, given = asyncio.run(_serve(app, go))
    assert default.status_code == 200 and given.status_code == 200, (default.text, given.text)
    assert t2i.calls[0] == (
        "a cat",
        GenerationParams(seed=default.json()["seed"], num_inference_steps=30, guidance_scale=5.0),
    )
    assert (default.json()["num_inference_steps"], default.json()["guidance_scale"]) == (30, 5.0)
    expected = GenerationParams(seed=3, num_inference_steps=2, guidance_scale=7.0, lora_scale=0.5, width=128, height=96,
                                negative_prompt="blur")  # fmt: skip
    assert t2i.calls[1] == ("a dog", expected)
    assert given.json()["lora_scale"] == 0.5 and (given.json()["width"], given.json()["height"]) == (128, 96)

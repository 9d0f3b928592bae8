"""Requests that are given up - timed out (504) or abandoned by their client - free the worker: their
queued images never reach the model, a running generation stops within one UNet/VAE block, and the next
request runs. Real sockets (uvicorn as `vlgen serve` runs it) where a disconnect must be seen."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from servefixtures import connect, png_bytes, raw_request, serve_in_thread

from vlgen.serving.app import create_app
from vlgen.serving.generation import GenerationCancelled, TextToImage
from vlgen.serving.process import free_port
from vlgen.serving.settings import ServeSettings
from vlgen.t2i.generate import GenerationParams

BLOCK_SLEEP_S = 0.5  # added to each of the 12 UNet ResNet blocks for SLOW_PX images: a step takes >= 6 s
SLOW_PX = 128  # tiny SDXL's native size is 64 px (fast); 128 px requests stand for big, slow ones


class RecordingCaptioner:
    """Records the size of every image that reaches the model; `delay` seconds per batch."""

    family = "fake"

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.seen: list[tuple[int, int]] = []

    def generate(self, images, num_beams=1, max_new_tokens=30):
        self.seen += [im.size for im in images]
        time.sleep(self.delay)
        return [f"a {im.width}x{im.height} image" for im in images]


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_caption_client_that_leaves_has_its_queued_images_dropped() -> None:
    captioner = RecordingCaptioner(delay=1.5)
    settings = ServeSettings(port=free_port(), max_wait_ms=0)
    with serve_in_thread(create_app(settings, captioner=captioner), settings) as url, ThreadPoolExecutor(1) as pool:
        busy = pool.submit(
            httpx.post, url + "/v1/caption", files={"file": ("busy.png", png_bytes(size=(10, 10)))}, timeout=30
        )
        _wait_for(lambda: (10, 10) in captioner.seen)  # the model is busy for 1.5 s
        files = [("files", (f"{i}.png", png_bytes(size=(20, 20)), "image/png")) for i in range(3)]
        with connect(url) as sock:  # three images queue behind the busy batch, then their client leaves
            sock.sendall(raw_request(httpx.Request("POST", url + "/v1/caption", files=files)))
            time.sleep(0.5)
        assert busy.result().status_code == 200
        after = httpx.post(url + "/v1/caption", files={"file": ("next.png", png_bytes(size=(30, 30)))}, timeout=30)
        assert after.status_code == 200, after.text
        health = httpx.get(url + "/health").json()["caption"]
    assert (20, 20) not in captioner.seen, captioner.seen  # the abandoned images never reached the model
    assert captioner.seen == [(10, 10), (30, 30)]
    assert health["abandoned_requests"] == 1 and health["queued"] == 0


# -- generation -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slow_t2i(tiny_sdxl_dir: Path):
    """Tiny SDXL whose denoising steps take >= 6 s for SLOW_PX images (a sleep after each UNet ResNet block)
    - what one step of real SDXL at 1024 px takes on a CPU, without the CPU time - and stay fast at 64 px.
    Returns (t2i, unet_calls): the times at which UNet forwards finished."""
    from diffusers.models.resnet import ResnetBlock2D

    t2i = TextToImage.load(str(tiny_sdxl_dir))
    latent_side = [0]
    unet_calls: list[float] = []
    unet = t2i.pipe.unet
    unet.register_forward_pre_hook(lambda m, args: latent_side.__setitem__(0, args[0].shape[-1]))  # (B, 4, h, w)
    unet.register_forward_hook(lambda *a: unet_calls.append(time.monotonic()))
    for module in unet.modules():
        if isinstance(module, ResnetBlock2D):
            module.register_forward_hook(
                lambda *a: time.sleep(BLOCK_SLEEP_S) if latent_side[0] >= SLOW_PX // 8 else None
            )
    t2i.generate("warm-up", GenerationParams(num_inference_steps=1))  # kernels, caches
    return t2i, unet_calls


def test_cancel_hooks_stop_inside_a_denoising_step(slow_t2i) -> None:
    """The hooks sit on diffusers' ResnetBlock2D / BasicTransformerBlock: if diffusers renames or moves them,
    this fails (import error, or no hook installed, or the stop comes only at a step's end)."""
    t2i, unet_calls = slow_t2i
    assert t2i.cancel_points >= 12 + 12  # the tiny UNet's 12 ResNet and 12 transformer blocks (+ the VAE's)
    polls = []

    def stop_on_the_fifth_poll() -> bool:
        polls.append(1)
        return len(polls) >= 5  # poll 1: before the pipeline; 2-4: the first UNet blocks

    before = len(unet_calls)
    with pytest.raises(GenerationCancelled):
        t2i.generate("a red cube", GenerationParams(num_inference_steps=4), should_stop=stop_on_the_fifth_poll)
    assert len(unet_calls) == before  # stopped inside the first UNet forward, not at the end of a step
    image = t2i.generate("a red cube", GenerationParams(num_inference_steps=1))  # the pipeline still works
    assert image.size == (64, 64)


def test_generate_timeout_frees_the_worker_for_the_next_request(slow_t2i) -> None:
    t2i, _ = slow_t2i
    app = create_app(ServeSettings(generate_timeout_s=3.0), captioner=RecordingCaptioner(0.0), t2i=t2i)
    big = {"prompt": "a red cube", "num_inference_steps": 3, "width": SLOW_PX, "height": SLOW_PX}

    async def go(client: httpx.AsyncClient):
        timed_out = await client.post("/v1/generate", json=big)
        t0 = time.monotonic()
        following = await client.post("/v1/generate", json={"prompt": "a blue cube", "num_inference_steps": 1})
        return timed_out, following, time.monotonic() - t0, (await client.get("/health")).json()["generate"]

    async def serve():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
                return await go(client)

    timed_out, following, seconds, health = asyncio.run(serve())
    assert timed_out.status_code == 504 and timed_out.json()["error"]["type"] == "timeout"
    # Before: the timed-out generation held the worker to the end of its 6 s step, so this one got a 504 too.
    assert following.status_code == 200, following.text
    assert seconds < 3.0
    assert health["cancelled"] == 1 and health["admitted"] == 0


def test_generate_client_that_leaves_stops_its_generation(slow_t2i) -> None:
    t2i, unet_calls = slow_t2i
    settings = ServeSettings(port=free_port())
    with serve_in_thread(create_app(settings, captioner=RecordingCaptioner(0.0), t2i=t2i), settings) as url:
        before = len(unet_calls)
        big = {"prompt": "a red cube", "num_inference_steps": 4, "width": SLOW_PX, "height": SLOW_PX}
        with connect(url) as sock:
            sock.sendall(raw_request(httpx.Request("POST", url + "/v1/generate", json=big)))
            time.sleep(1.0)  # inside the first (>= 6 s) denoising step
        t_left = time.monotonic()
        _wait_for(lambda: httpx.get(url + "/health").json()["generate"]["cancelled"] == 1, timeout=5)
        r = httpx.post(url + "/v1/generate", json={"prompt": "a blue cube", "num_inference_steps": 1}, timeout=30)
        seconds = time.monotonic() - t_left
        health = httpx.get(url + "/health").json()["generate"]
    assert r.status_code == 200, r.text
    # Before: the abandoned generation ran all 4 steps (>= 24 s) before this request could start.
    assert seconds < 4.0, seconds
    assert len(unet_calls) - before == 1  # the one step of the following request; the abandoned one finished none
    assert health["cancelled"] == 1 and health["completed"] == 1


def test_flux_server_model_uses_its_family_defaults_and_stops_inside_the_transformer(tiny_flux_dir: Path) -> None:
    """`vlgen serve --t2i-base FLUX`: a request without steps/guidance gets FLUX.1-dev's (28, 3.5), the native size
    is Flux's 1024 px, and the cancel hooks sit on the transformer's double- and single-stream blocks."""
    t2i = TextToImage.load(str(tiny_flux_dir))
    assert t2i.family.name == "flux" and t2i.defaults == (28, 3.5) and t2i.default_size == 1024
    assert t2i.cancel_points >= 1 + 2  # the tiny transformer's 1 double- and 2 single-stream blocks (+ the VAE's)
    polls = []

    def stop_on_the_third_poll() -> bool:
        polls.append(1)
        return len(polls) >= 3  # poll 1: before the pipeline; 2: the first block; 3: the next

    params = GenerationParams(num_inference_steps=2, width=64, height=64)
    with pytest.raises(GenerationCancelled):
        t2i.generate("a red cube", params, should_stop=stop_on_the_third_poll)
    assert t2i.generate("a red cube", params).size == (64, 64)

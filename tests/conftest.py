"""Shared fixtures. Kept minimal: each tiny model is built once per session, lazily (only if a test asks).

The directories are what `vlgen tiny NAME OUT` writes; load them through the normal path
(`resolve_model(dir)` -> `from_pretrained`). Treat them as read-only: other tests share them.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def _build(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    from vlgen.testing import build_tiny

    return build_tiny(name, tmp_path_factory.mktemp("tiny") / name, seed=0)


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BlipForConditionalGeneration + BlipProcessor (real bert-base-uncased vocab + [DEC]/[ENC])."""
    return _build(tmp_path_factory, "blip")


@pytest.fixture(scope="session")
def tiny_vit_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """VisionEncoderDecoderModel (ViT -> GPT-2) + ViTImageProcessor + GPT-2 BPE tokenizer."""
    return _build(tmp_path_factory, "vit-gpt2")


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """StableDiffusionXLPipeline directory; default output 64x64, vae_scale_factor 8."""
    return _build(tmp_path_factory, "sdxl")


@pytest.fixture(scope="session")
def tiny_sdxl_vae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AutoencoderKL compatible with tiny_sdxl_dir (the sdxl-vae-fp16-fix stand-in, passed as `vae=`)."""
    return _build(tmp_path_factory, "sdxl-vae")


@pytest.fixture(scope="session")
def tiny_sd15_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """StableDiffusionPipeline directory without safety checker; default output 64x64, vae_scale_factor 8."""
    return _build(tmp_path_factory, "sd15")


@pytest.fixture(scope="session")
def tiny_flux_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FluxPipeline directory (FLUX.1-dev-like, guidance embeds); call it with height=width=64 and a short
    max_sequence_length: 8x8 latents of 16 channels -> 4x4 packed tokens of 64."""
    return _build(tmp_path_factory, "flux")


@pytest.fixture(scope="session")
def tiny_flux_schnell_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FluxPipeline directory (FLUX.1-schnell-like: no guidance embeds, static shift 1.0); 64 px as tiny_flux_dir."""
    return _build(tmp_path_factory, "flux-schnell")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CLIPModel + CLIPProcessor (32 px images, 77-token CLIP BPE tokenizer)."""
    return _build(tmp_path_factory, "clip")


@pytest.fixture(scope="session")
def tiny_dino_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ViTModel without pooler + ViTImageProcessor; load with `add_pooling_layer=False`."""
    return _build(tmp_path_factory, "dino")


@pytest.fixture(scope="session")
def tiny_cnn_lstm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vlgen's CNN-LSTM captioner (built by vlgen.captioning.cnn_lstm.build_tiny_cnn_lstm)."""
    return _build(tmp_path_factory, "cnn-lstm")


@pytest.fixture
def sigkill_at_first_checkpoint():
    """Kill a training process with SIGKILL as soon as its first checkpoint is on disk (shared by the
    captioning and LoRA exact-resume tests); fails if the run finished, or left no checkpoint, first."""
    import os
    import signal
    import time

    from vlgen.checkpointing import list_checkpoints

    def kill(proc, checkpoints: Path, finished: Path, timeout: float = 240) -> Path:
        deadline = time.time() + timeout
        while not list_checkpoints(checkpoints) and time.time() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert not finished.exists(), "the run finished before it could be killed"
        return list_checkpoints(checkpoints)[-1]

    return kill


def pytest_configure(config: pytest.Config) -> None:
    """One intra-op thread for every test and the subprocesses tests start.

    The tiny models gain nothing from a second thread, and on a loaded 2-core machine two OpenMP threads per
    process made small matmuls up to ~100x slower (measured while several suites ran at once).
    """
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

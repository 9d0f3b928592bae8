"""Fixtures for the serving tests: real `vlgen serve` processes on loopback, with tiny models.

Two servers are spawned together (they load in parallel) and shared by the whole session:
- `server`: tiny BLIP captioner + tiny SDXL with a tiny LoRA, small limits (1 MiB bodies, 4 steps, 128 px);
- `keyed_server`: tiny BLIP only, with an API key (and so no text-to-image: /v1/generate answers 501).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from servefixtures import API_KEY, MAX_BODY_MB

from vlgen.serving.process import ServerProcess


@pytest.fixture(scope="session")
def tiny_lora_dir(tiny_sdxl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A UNet LoRA for tiny SDXL in the diffusers file format (pytorch_lora_weights.safetensors), with
    random non-zero B matrices so that lora_scale visibly changes the image."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(tiny_sdxl_dir / "unet")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    out = tmp_path_factory.mktemp("lora")
    StableDiffusionXLPipeline.save_lora_weights(
        out, unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    )
    return out


@pytest.fixture(scope="session")
def _servers(tiny_blip_dir: Path, tiny_sdxl_dir: Path, tiny_lora_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    logs = tmp_path_factory.mktemp("serve-logs")
    main = ServerProcess(
        [
            "--caption-model", str(tiny_blip_dir),
            "--t2i-base", str(tiny_sdxl_dir),
            "--lora", str(tiny_lora_dir),
            "--max-batch-size", "8",
            "--max-wait-ms", "20",
            "--max-queue", "64",
            "--max-body-mb", str(MAX_BODY_MB),
            "--max-pixels", "4000000",
            "--max-steps", "4",
            "--max-side", "128",
            "--num-threads", "1",  # CI boxes are small and shared: see ServeSettings.num_threads
            "--log-level", "warning",
        ],
        log_path=logs / "main.log",
    )  # fmt: skip
    keyed = ServerProcess(
        ["--caption-model", str(tiny_blip_dir), "--api-key", API_KEY, "--num-threads", "1", "--log-level", "warning"],
        log_path=logs / "keyed.log",
    )
    try:
        main.spawn()
        keyed.spawn()
        main.wait_ready()
        keyed.wait_ready()
        yield {"main": main, "keyed": keyed}
    finally:
        main.stop()
        keyed.stop()


@pytest.fixture(scope="session")
def server(_servers) -> ServerProcess:
    return _servers["main"]


@pytest.fixture(scope="session")
def keyed_server(_servers) -> ServerProcess:
    return _servers["keyed"]

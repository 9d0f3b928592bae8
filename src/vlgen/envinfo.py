"""What `vlgen env` reports: versions, device, hub status, caches, Java (for METEOR/PTB tokenizer).

Paste its output into bug reports. Collecting it imports the heavy libraries, so only call it on demand.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata

from vlgen import __version__
from vlgen.hub import hub_cache_dir, hub_endpoint, hub_offline, hub_reachable

PACKAGES = ("torch", "torchvision", "transformers", "diffusers", "peft", "accelerate", "datasets", "safetensors")


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def java_info() -> dict:
    java = shutil.which("java")
    if java is None:
        return {"present": False, "path": None, "version": None}
    try:
        # `java -version` prints to stderr.
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=20)
        first = (proc.stderr or proc.stdout).strip().splitlines()
        version = first[0] if first else None
    except (OSError, subprocess.TimeoutExpired):
        version = None
    return {"present": True, "path": java, "version": version}


def device_info() -> dict:
    import torch

    info: dict = {"cuda_available": torch.cuda.is_available(), "cuda_version": torch.version.cuda}
    if torch.cuda.is_available():
        info["device"] = "cuda"
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        info["device"] = "mps"
    else:
        info["device"] = "cpu"
    info["cpu_threads"] = torch.get_num_threads()
    return info


def collect(check_hub: bool = True) -> dict:
    import torch

    offline = hub_offline()
    reachable = None if (offline or not check_hub) else hub_reachable(timeout=2.0)
    return {
        "vlgen": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {p: _version(p) for p in PACKAGES},
        "device": device_info(),
        "hub": {"endpoint": hub_endpoint(), "offline": offline, "reachable": reachable},
        "caches": {
            "hf_home": os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")),
            "hf_hub_cache": str(hub_cache_dir()),
            "torch_hub": torch.hub.get_dir(),
        },
        "java": java_info(),
    }

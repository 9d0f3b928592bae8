"""`ServeSettings`: everything `vlgen serve` can be told, with its defaults written once.

`vlgen serve`'s options are generated from these fields, in this order (`vlgen.cli.serve`), except the
caption request defaults and limits (num_beams, max_new_tokens, max_num_beams, max_new_tokens_limit), which
only the Python API sets.

`check()` validates the whole thing before any model is loaded, so a bad flag costs nothing and says which
flag and value are wrong. The security rule lives here too: binding anything but loopback needs an API key.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass

from vlgen.errors import ConfigError

LOOPBACK_NAMES = ("localhost", "ip6-localhost")


@dataclass
class ServeSettings:
    # models
    caption_model: str = "blip"  # family name, hub id or directory (vlgen.captioning.registry.load_captioner)
    caption_prompt: str | None = None  # vision-language captioners: the default prompt (None: the model's own)
    dtype: str | None = None  # fp32 (None), bf16 or fp16 for the caption model
    t2i_base: str | None = None  # SDXL base; None = /v1/generate answers 501 "not enabled"
    lora: str | None = None  # as `vlgen generate --lora`: output dir or .safetensors; scaled per request
    vae: str | None = None  # as `vlgen generate --vae`: a separate VAE for t2i_base; None / "none" = the base's own
    # network
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    # compute
    device: str | None = None  # None = cuda when available, else cpu
    num_threads: int | None = None  # torch intra-op CPU threads; None = torch's default (one per core)
    # micro-batching of captions (max_batch_size 1 = batching off)
    max_batch_size: int = 8
    max_wait_ms: float = 10.0
    max_queue: int = 64  # images admitted and not yet answered; beyond it -> 503 + Retry-After
    max_generate_queue: int = 4  # generation requests admitted (one runs, the others wait)
    # limits
    max_body_mb: float = 20.0
    max_pixels: int = 25_000_000  # per uploaded image, checked from the header before decoding
    max_files: int = 16  # images per caption request
    # Sum of width x height over one request's images, from their headers, before any is decoded -> 413.
    # The default lets every request within the other limits through (16 x 25 MP): decoding is bounded anyway
    # (images are reduced to the model's size as they decode, two at a time); lower it to bound CPU per request.
    max_request_pixels: int = 400_000_000
    timeout_s: float = 60.0  # per caption request, from admission to answer -> 504
    generate_timeout_s: float = 600.0  # per generation request -> 504 (CPU SDXL is slow)
    # stalled clients: the whole request head must arrive within header_timeout_s of the connection opening
    # (or of the last response on a kept-alive connection), and the body may not pause longer than
    # body_timeout_s between reads -> 408 and the connection is closed
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    # caption options: defaults and the largest values a request may ask for
    num_beams: int = 4
    max_new_tokens: int = 30
    max_num_beams: int = 8
    max_new_tokens_limit: int = 128
    # generation options: bounds a request may ask for
    max_steps: int = 100
    max_side: int = 2048

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)

    def check(self) -> ServeSettings:
        """Raise `ConfigError` naming the first bad option; returns self."""
        positive = {
            "--max-batch-size": self.max_batch_size,
            "--max-queue": self.max_queue,
            "--max-generate-queue": self.max_generate_queue,
            "--max-body-mb": self.max_body_mb,
            "--max-pixels": self.max_pixels,
            "--max-files": self.max_files,
            "--max-request-pixels": self.max_request_pixels,
            "--timeout-s": self.timeout_s,
            "--generate-timeout-s": self.generate_timeout_s,
            "--header-timeout-s": self.header_timeout_s,
            "--body-timeout-s": self.body_timeout_s,
            "--max-steps": self.max_steps,
            "--max-side": self.max_side,
        }
        for flag, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{flag} must be > 0, got {value}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"--num-threads must be >= 1, got {self.num_threads}")
        if self.max_wait_ms < 0:
            raise ConfigError(f"--max-wait-ms must be >= 0, got {self.max_wait_ms}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0..65535, got {self.port}")
        if self.max_queue < self.max_batch_size:
            raise ConfigError(f"--max-queue ({self.max_queue}) must be >= --max-batch-size ({self.max_batch_size})")
        if self.max_side < 64 or self.max_side % 8:
            raise ConfigError(f"--max-side must be a multiple of 8 and >= 64, got {self.max_side}")
        if not 1 <= self.num_beams <= self.max_num_beams:
            raise ConfigError(f"default num_beams {self.num_beams} is outside 1..{self.max_num_beams}")
        if not 1 <= self.max_new_tokens <= self.max_new_tokens_limit:
            raise ConfigError(f"default max_new_tokens {self.max_new_tokens} is outside 1..{self.max_new_tokens_limit}")
        if self.dtype is not None and self.dtype not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"--dtype {self.dtype!r} is not one of fp32, bf16, fp16")
        if self.lora and not self.t2i_base:
            raise ConfigError(f"--lora {self.lora} needs --t2i-base (the SDXL model the LoRA was trained on)")
        if self.vae and self.vae.lower() != "none" and not self.t2i_base:
            raise ConfigError(f"--vae {self.vae} needs --t2i-base (the SDXL model it decodes for)")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("--api-key is empty")
        if not self.is_loopback and not self.api_key:
            # An unauthenticated model server on a public interface is an open GPU for anyone who finds it.
            raise ConfigError(
                f"refusing to bind {self.host} without --api-key (or VLGEN_API_KEY): only loopback "
                "(127.0.0.1, ::1, localhost) may be served without a key"
            )
        return self

    def public_dict(self) -> dict:
        """The resolved settings with the API key masked (for logs and /v1/models)."""
        d = asdict(self)
        d["api_key"] = "***" if self.api_key else None
        return d


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a hostname: we don't resolve it (it may resolve differently later)
        return False

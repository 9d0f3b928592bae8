"""What third-party libraries print: quiet by default, everything with `vlgen --verbose`.

Quiet means: the progress bars of transformers ("Loading weights", "Writing model shards"), diffusers
("Loading pipeline components...") and huggingface_hub ("Fetching N files") are off - they are tqdm bars
that print escape codes and carriage returns into logs when stderr is not a terminal - and warnings known to
be harmless for what vlgen does are dropped (`HARMLESS_WARNINGS`). vlgen's own progress bars (`vlgen.progress`)
are not affected; every other warning still shows.

`set_verbose(False)` never imports those libraries (diffusers alone takes seconds to import, and `--help` must
stay fast): a library imported already is switched now, one imported later is switched right after its import
(a `sys.meta_path` hook that runs after the module's own code). Only what vlgen switched off is switched back on.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
from collections.abc import Callable
from types import ModuleType

# logger name -> message prefixes that are noise for vlgen's use of the library.
HARMLESS_WARNINGS: dict[str, tuple[str, ...]] = {
    # `load_lora_weights` on a UNet-only LoRA (what `vlgen train lora` writes without --train-text-encoder) says,
    # once per text encoder, on every `generate` and `serve` start: "No LoRA keys associated to CLIPTextModel
    # found with the prefix='text_encoder'. This is safe to ignore if ..." (diffusers 0.3x-0.4x).
    "diffusers.loaders.lora_base": ("No LoRA keys associated to ",),
    "diffusers.loaders.peft": ("No LoRA keys associated to ",),
    # With the `quant` extra installed (torchao, bitsandbytes: `train lora --quantize-base`), importing diffusers or
    # peft imports both, and every command that loads a model printed 4 lines (torch 2.14, torchao 0.18,
    # bitsandbytes 0.50, diffusers 0.42): torchao's enums registered with pytree, bitsandbytes' optional CPU
    # kernel package, and diffusers' check of torchao's tensor classes. None matters to what vlgen runs.
    "torch.utils._pytree": ("<enum '",),
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward from kernels-community",),
    "diffusers.quantizers.torchao.torchao_quantizer": ("Unable to import `torchao` Tensor objects",),
}

_lock = threading.Lock()
_verbose = True  # until set_verbose() is called, libraries behave as they do without vlgen
_switched_off: set[str] = set()  # modules whose bars vlgen turned off (and so may turn back on)


class _DropHarmless(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.WARNING and record.getMessage().startswith(self.prefixes))


_FILTERS = {name: _DropHarmless(prefixes) for name, prefixes in HARMLESS_WARNINGS.items()}


def _hub(module: ModuleType, quiet: bool) -> None:
    (module.disable_progress_bars if quiet else module.enable_progress_bars)()


def _library_logging(module: ModuleType, quiet: bool) -> None:
    (module.disable_progress_bar if quiet else module.enable_progress_bar)()


# module that holds the switch -> how to switch it. transformers reads huggingface_hub's switch only once, when
# it is imported, so it has its own entry.
_SWITCHES: dict[str, Callable[[ModuleType, bool], None]] = {
    "huggingface_hub.utils": _hub,
    "transformers.utils.logging": _library_logging,
    "diffusers.utils.logging": _library_logging,
}


def _apply(name: str, module: ModuleType) -> None:
    """Bring one imported library in line with the current setting."""
    with _lock:
        if not _verbose:
            _SWITCHES[name](module, True)
            _switched_off.add(name)
        elif name in _switched_off:
            _SWITCHES[name](module, False)
            _switched_off.discard(name)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; for the modules in `_SWITCHES` it wraps the real loader so `_apply` runs right after
    the module's code (the library's own defaults are set by then, so ours win)."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _SWITCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            _apply(fullname, module)

        spec.loader.exec_module = exec_module  # this spec's own loader instance
        return spec


_HOOK = _AfterImport()


def set_verbose(verbose: bool) -> None:
    """Quiet (False): third-party progress bars off, `HARMLESS_WARNINGS` dropped. Verbose (True): undo both."""
    global _verbose
    with _lock:
        _verbose = verbose
    for name, f in _FILTERS.items():
        logger = logging.getLogger(name)  # the same object the library's get_logger(__name__) returns
        if verbose:
            logger.removeFilter(f)
        elif f not in logger.filters:
            logger.addFilter(f)
    for name in _SWITCHES:
        module = sys.modules.get(name)
        if module is not None:
            _apply(name, module)
    if not verbose and _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


def is_verbose() -> bool:
    return _verbose

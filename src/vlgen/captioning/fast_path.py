"""What the captioning fast paths (`blip_fast`, `vit_gpt2_fast`, `florence_fast`) share: the on/off switch, the
check of the transformers internals they rely on, and the warn-and-fall-back rule.

Each family module keeps what is its own - the patches, its `INTERNALS` table and the tiny-module equality
checks - and its public names (`fast_path_enabled`, `transformers_internals_problems`, `internals_message`,
`fast_path_usable`), which call the helpers here. The contract all three follow:
- the switch: an explicit `fast_path` argument wins; else the family's environment variable, `1`/`true`/`yes`/`on`
  or unset: on, `0`/`false`/`no`/`off`: off, anything else refused (a typo must not silently mean "on");
- the check: names, signatures and attributes first (cheap, and the tiny modules cannot be built without them),
  then the patched code run against transformers' own on tiny random modules;
- the fallback: a transformers whose internals moved costs speed, never captions - warn and run plain transformers.
"""

from __future__ import annotations

import importlib
import inspect
import os
import warnings
from collections.abc import Callable, Mapping

import torch

from vlgen.errors import ConfigError

_ON = {"", "1", "true", "yes", "on"}
_OFF = {"0", "false", "no", "off"}

# module -> class -> (name of the method the patches rely on, parameters it must take)
MethodTable = Mapping[str, Mapping[str, tuple[str, tuple[str, ...]]]]


def env_switch(env_var: str, fast_path: bool | None = None) -> bool:
    """`fast_path` if given, else `$env_var` (unset: on). A value that is not a yes/no is refused."""
    if fast_path is not None:
        return bool(fast_path)
    value = os.environ.get(env_var, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ConfigError(f"{env_var}={os.environ[env_var]!r}: expected 1 or 0 (true/false, yes/no, on/off)")


def _signature_problems(methods: MethodTable, classes: dict[str, type]) -> list[str]:
    """Each module imports, each class is there, each method takes the named parameters; found classes go into
    `classes` (by class name) for the checks that build modules."""
    problems: list[str] = []
    for module_name, wanted in methods.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            problems.append(f"{module_name} does not import ({e})")
            continue
        for cls_name, (method_name, params) in wanted.items():
            cls = getattr(module, cls_name, None)
            if not isinstance(cls, type):
                problems.append(f"{module_name}.{cls_name} is missing")
                continue
            classes[cls_name] = cls
            method = getattr(cls, method_name, None)
            if method is None:
                problems.append(f"{cls_name}.{method_name} is missing")
                continue
            names = list(inspect.signature(method).parameters)
            if missing := [p for p in params if p not in names]:
                problems.append(f"{cls_name}.{method_name}({', '.join(names)}) has no {', '.join(missing)}")
    return problems


def check_internals(
    methods: MethodTable,
    tiny_check: Callable[[dict[str, type]], list[str]],
    tiny_what: str,
    *,
    more_checks: Callable[[dict[str, type]], list[str]] | None = None,
    outputs: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """What no longer matches the transformers internals a fast path relies on (empty: all as written for).

    `methods`: the names and signatures (a family's `INTERNALS`, reduced to the method checked per class);
    `more_checks(classes)`: the family's own checks on the classes found (e.g. a parameter that must not appear);
    `outputs`: classes of `transformers.modeling_outputs` the patches build. Only when all of those hold is
    `tiny_check(classes)` run (building tiny modules needs them); any exception it raises is itself a problem
    ("building or running {tiny_what} failed: ..."), since it means the internals moved.
    """
    classes: dict[str, type] = {}
    problems = _signature_problems(methods, classes)
    if more_checks is not None:
        problems += more_checks(classes)
    for name in outputs:
        try:
            getattr(importlib.import_module("transformers.modeling_outputs"), name)
        except (ImportError, AttributeError):
            problems.append(f"transformers.modeling_outputs.{name} is missing")
    if problems:
        return tuple(problems)
    try:
        with torch.random.fork_rng(devices=[]):  # module init draws from the global RNG: leave the caller's seed alone
            problems += tiny_check(classes)
    except Exception as e:  # any failure here means the internals moved
        problems.append(f"building or running {tiny_what} failed: {type(e).__name__}: {e}")
    return tuple(problems)


def changed_internals_message(subject: str, written_for: str, source: str, problems: list[str]) -> str:
    """The one-line report of a failed check: "transformers X changed the {subject} (written for ...; source): ..."."""
    import transformers

    return (
        f"transformers {transformers.__version__} changed the {subject} "
        f"(written for transformers {written_for}; {source}): " + "; ".join(problems)
    )


def usable(enabled: bool, problems: Callable[[], list[str]], message: Callable[[list[str]], str], env_var: str) -> bool:
    """Whether to enter a family's `fast_generation`: `enabled` (its switch) and no `problems()`. If there are
    problems, warns (once per calling line, Python's default filter) and answers False: captions then come from
    plain transformers, only slower. Called from a family's `fast_path_usable`: `stacklevel` names that function's
    caller's caller (the captioner's `load`), as it did when each family warned itself."""
    if not enabled:
        return False
    found = problems()
    if found:
        warnings.warn(
            message(found) + f". Using plain transformers (set {env_var}=0 to silence this).",
            RuntimeWarning,
            stacklevel=4,
        )
        return False
    return True

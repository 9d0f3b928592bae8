"""Typer options generated from a config dataclass, so a trainer's options are declared once (its dataclass).

Every field `foo_bar` becomes `--foo-bar`; booleans become `--foo-bar/--no-foo-bar`; `Literal[...]` becomes
a choice. All defaults are `None` ("not given"), so `resolve_config` can layer defaults -> yaml -> CLI;
the help text shows the dataclass default. Typer reads the generated `__signature__`.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path

import typer


def _annotation(tp):
    """The Optional[...] annotation typer should parse a field with (Literal -> choices of str)."""
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return _annotation(args[0]) if len(args) == 1 else str | None
    if origin is typing.Literal:
        return typing.Optional[typing.Literal[tuple(str(a) for a in typing.get_args(tp))]]  # noqa: UP045
    if tp in (int, float, str, bool, Path):
        return tp | None
    return str | None


def with_dataclass_options(cls: type, help: dict[str, str] | None = None) -> Callable:
    """Decorator: `f(config_file, **overrides)` gets `--config` plus one option per field of `cls`."""
    hints = typing.get_type_hints(cls)
    help = help or {}

    def decorate(f: Callable) -> Callable:
        params = [
            inspect.Parameter(
                "config_file",
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(None, "--config", help="yaml recipe; CLI options override it."),
                annotation=Path | None,
            )
        ]
        for fld in dataclasses.fields(cls):
            tp = hints[fld.name]
            flag = fld.name.replace("_", "-")
            default = fld.default if fld.default is not dataclasses.MISSING else None
            text = help.get(fld.name, "")
            if default not in (None, ""):
                text = f"{text} [default: {default}]".strip()
            decls = [f"--{flag}/--no-{flag}"] if tp is bool or tp == (bool | None) else [f"--{flag}"]
            params.append(
                inspect.Parameter(
                    fld.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=typer.Option(None, *decls, help=text, show_default=False),
                    annotation=_annotation(tp),
                )
            )

        def wrapper(**kwargs):
            config_file = kwargs.pop("config_file")
            return f(config_file, **kwargs)

        wrapper.__signature__ = inspect.Signature(params)
        wrapper.__name__ = f.__name__
        wrapper.__doc__ = f.__doc__
        return wrapper

    return decorate

"""Typer options generated from a config dataclass, so a trainer's options are declared once (its dataclass).

Every field `foo_bar` becomes `--foo-bar`; booleans become `--foo-bar/--no-foo-bar`; `Literal[...]` becomes
a choice. A nested dataclass marked `vlgen.config.FLAT` gives its fields' options in its place (`--encoder` for
`CaptionTrainConfig.cnn_lstm.encoder`). All defaults are `None` ("not given"), so `resolve_config` can layer
defaults -> yaml -> CLI; the help text shows the dataclass default. Typer reads the generated `__signature__`.
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


def _choices(tp) -> tuple[str, ...]:
    """The values of a `Literal[...]` (or `Literal[...] | None`) field; () for other types."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _choices(args[0]) if len(args) == 1 else ()
    return tuple(map(str, typing.get_args(tp))) if typing.get_origin(tp) is typing.Literal else ()


def with_dataclass_options(
    cls: type,
    help: dict[str, str] | None = None,
    *,
    config_option: bool = True,
    exclude: tuple[str, ...] = (),
    envvars: dict[str, str] | None = None,
    extra: tuple[inspect.Parameter, ...] = (),
) -> Callable:
    """Decorator: `f(config_file, **overrides)` gets `--config` plus one option per field of `cls`.

    `config_option=False`: no `--config` (`f` gets `config_file=None`); `exclude`: fields that are not options;
    `envvars`: field -> environment variable read when the option is not given; `extra`: more (keyword-only)
    parameters that are not fields of `cls`, passed to `f` among the overrides.
    """
    from vlgen.config import option_fields

    help = help or {}
    envvars = envvars or {}

    def decorate(f: Callable) -> Callable:
        params = []
        if config_option:
            params.append(
                inspect.Parameter(
                    "config_file",
                    inspect.Parameter.KEYWORD_ONLY,
                    default=typer.Option(None, "--config", help="yaml recipe; CLI options override it."),
                    annotation=Path | None,
                )
            )
        for fld, tp in option_fields(cls):
            if fld.name in exclude:
                continue
            flag = fld.name.replace("_", "-")
            default = fld.default if fld.default is not dataclasses.MISSING else None
            text = help.get(fld.name, "")
            choices = _choices(tp)
            if choices and not all(c in text for c in choices):
                text = f"{text} Choices: {', '.join(choices)}.".strip()
            if default not in (None, ""):
                text = f"{text} [default: {default}]".strip()
            decls = [f"--{flag}/--no-{flag}"] if tp is bool or tp == (bool | None) else [f"--{flag}"]
            # A choice's metavar would list every choice on the option's line, past 80 columns.
            metavar = "<choice>" if choices else None
            params.append(
                inspect.Parameter(
                    fld.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=typer.Option(
                        None, *decls, help=text, show_default=False, metavar=metavar, envvar=envvars.get(fld.name)
                    ),
                    annotation=_annotation(tp),
                )
            )
        params.extend(extra)

        def wrapper(**kwargs):
            config_file = kwargs.pop("config_file", None)
            return f(config_file, **kwargs)

        wrapper.__signature__ = inspect.Signature(params)
        wrapper.__name__ = f.__name__
        wrapper.__doc__ = f.__doc__
        return wrapper

    return decorate


def plain_help(command) -> None:
    """Use click's plain help layout for `command` and every subcommand, instead of typer's rich panels.

    Rich's option table shares the terminal's width between the option names, their metavars and the help,
    so at 80 columns it cut 30 of `train lora`'s long diffusers option names (e.g. `--checkpointing-steps`); click's
    layout puts a long name on a line of its own and the help under it, never cutting either.
    """
    command.rich_markup_mode = None
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)

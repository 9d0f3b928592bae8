"""Click options generated from a config dataclass, so a trainer's options are declared once (its dataclass).

Every field `foo_bar` becomes `--foo-bar`; booleans become `--foo/--no-foo`; `Literal[...]` becomes a
choice. All defaults are `None` ("not given"), so `resolve_config` can layer defaults -> yaml -> CLI.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

import click


def _click_type(tp):
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return _click_type(args[0]) if len(args) == 1 else str
    if origin is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(tp)])
    if tp in (int, float, str, bool):
        return tp
    if tp is Path:
        return click.Path(path_type=Path)
    return str


def dataclass_options(cls: type, help: dict[str, str] | None = None, skip: tuple[str, ...] = ()):
    """Decorator adding one option per dataclass field."""
    hints = typing.get_type_hints(cls)
    help = help or {}

    def decorate(f):
        for fld in reversed(dataclasses.fields(cls)):
            if fld.name in skip:
                continue
            tp = hints[fld.name]
            flag = fld.name.replace("_", "-")
            default = fld.default if fld.default is not dataclasses.MISSING else None
            text = help.get(fld.name, "")
            text = f"{text} [default: {default}]".strip() if default not in (None, "") else text
            base = typing.get_args(tp)[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) else tp
            if base is bool:
                f = click.option(f"--{flag}/--no-{flag}", fld.name, default=None, help=text)(f)
            else:
                f = click.option(f"--{flag}", fld.name, type=_click_type(tp), default=None, help=text)(f)
        return f

    return decorate

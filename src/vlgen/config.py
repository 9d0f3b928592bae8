"""Config as dataclasses, layered defaults -> yaml -> CLI, with the resolved config saved next to outputs.

Each command owns one dataclass whose field defaults are written once, there. `resolve_config` starts from
those defaults, applies a yaml file (unknown keys are an error naming the key and the file), then the CLI
options the user actually gave (`None` means "not given"). `save_config` writes the result as yaml beside
the outputs (`config.yaml`), so every run can be reproduced with `--config OUT/config.yaml`.

A config may nest another dataclass flat (`FLAT`, `@flat_options`): `CaptionTrainConfig.cnn_lstm` holds the
CNN-LSTM's hyper-parameters, declared once in `CnnLstmConfig`, yet a user sets each by its own name - `--encoder`,
`encoder:` in a yaml (or the nested `cnn_lstm: {encoder: ...}`), `CaptionTrainConfig(encoder=...)` - and
config.yaml writes them flat, as before they were nested, so older runs' config.yaml still load and resume.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from vlgen.errors import ConfigError
from vlgen.fileio import atomic_write_text

T = TypeVar("T")

RESOLVED_CONFIG_NAME = "config.yaml"


# Metadata of a field whose type is a dataclass: its options are options of the outer config, by their own names.
FLAT = {"flat": True}


def _is_option(f: dataclasses.Field) -> bool:
    """`metadata={"option": False}`: set by code (e.g. the vocabulary size), never by a user; not a key."""
    return f.metadata.get("option", True)


@functools.cache
def flat_option_parents(cls: type) -> dict[str, str]:
    """Option name -> the `FLAT` field of `cls` that holds it (`{"encoder": "cnn_lstm", ...}`)."""
    hints = typing.get_type_hints(cls)
    own = {f.name for f in dataclasses.fields(cls)}
    parents: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("flat"):
            for inner in filter(_is_option, dataclasses.fields(hints[f.name])):
                if inner.name in own or inner.name in parents:
                    raise TypeError(f"{cls.__name__}: option {inner.name!r} of {f.name} is declared twice")
                parents[inner.name] = f.name
    return parents


def option_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """(field, type) of every option of `cls` in order; a `FLAT` field's options stand in its place.
    What the CLI generates its options from (vlgen.cli._options)."""
    hints = typing.get_type_hints(cls)
    found: list[tuple[dataclasses.Field, Any]] = []
    for f in filter(_is_option, dataclasses.fields(cls)):
        if f.metadata.get("flat"):
            inner = typing.get_type_hints(hints[f.name])
            found += [(i, inner[i.name]) for i in filter(_is_option, dataclasses.fields(hints[f.name]))]
        else:
            found.append((f, hints[f.name]))
    return found


def _field_types(cls: type) -> dict[str, Any]:
    """The keys a yaml/override may give, with their types: the options, and a `FLAT` field's own name too."""
    hints = typing.get_type_hints(cls)
    types_ = {f.name: hints[f.name] for f in filter(_is_option, dataclasses.fields(cls))}
    return types_ | {f.name: tp for f, tp in option_fields(cls)}


def _nest(cls: type, kwargs: dict[str, Any], base: Any = None) -> dict[str, Any]:
    """`kwargs` with flat options moved into their `FLAT` field: `{encoder: "tiny"}` -> `{cnn_lstm: replace(
    <cnn_lstm given, or base's, or the default>, encoder="tiny")}`."""
    parents = flat_option_parents(cls)
    if not parents.keys() & kwargs.keys():
        return kwargs
    kwargs, moved = dict(kwargs), {}
    for name in [k for k in kwargs if k in parents]:
        moved.setdefault(parents[name], {})[name] = kwargs.pop(name)
    defaults = {f.name: f for f in dataclasses.fields(cls)}
    for parent, values in moved.items():
        inner = kwargs.get(parent)
        if inner is None:
            inner = getattr(base, parent) if base is not None else defaults[parent].default_factory()
        kwargs[parent] = dataclasses.replace(inner, **values)
    return kwargs


def flat_options(cls: type[T]) -> type[T]:
    """Class decorator for a config with `FLAT` fields: `Cfg(encoder="tiny")`, `cfg.encoder` and `cfg.encoder = x`
    reach `cfg.cnn_lstm.encoder`, as when each option was a field of its own (dataclasses.replace too)."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **_nest(cls, kwargs))

    def __getattr__(self, name: str) -> Any:  # only called for names that are not attributes
        parent = flat_option_parents(cls).get(name)
        if parent is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(getattr(self, parent), name)

    def __setattr__(self, name: str, value: Any) -> None:
        parent = flat_option_parents(cls).get(name)
        if parent is None:
            object.__setattr__(self, name, value)
        else:  # a new inner config, never a mutation: `replace(cfg, lr=...)` shares `cfg.cnn_lstm` with `cfg`
            object.__setattr__(self, parent, dataclasses.replace(getattr(self, parent), **{name: value}))

    cls.__init__ = __init__  # type: ignore[method-assign]
    cls.__getattr__ = __getattr__  # type: ignore[attr-defined]
    cls.__setattr__ = __setattr__  # type: ignore[method-assign]
    return cls


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert a yaml value to the field's declared type; errors name the key and value."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:  # yaml reads "1e-4" (no dot) as a string
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"{where}: expected a path, got {value!r}")
    return value


def _from_dict(cls: type[T], data: dict, where: str) -> T:
    hints = _field_types(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (valid keys: {', '.join(sorted(hints))})")
    for name, parent in flat_option_parents(cls).items():
        if name in data and isinstance(data.get(parent), dict) and name in data[parent]:
            raise ConfigError(f"{where}: {name!r} is given twice, as {name} and as {parent}.{name}: keep one")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**_nest(cls, kwargs))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


SHIPPED_CONFIGS = Path(__file__).parent / "configs"


def shipped_configs() -> list[str]:
    """Names of the recipes that ship with vlgen (`--config NAME`), e.g. `blip-diffusiondb`."""
    return sorted(p.stem for p in SHIPPED_CONFIGS.glob("*.yaml"))


def locate_config(ref: str | Path) -> Path:
    """A yaml path, or the name of a shipped recipe."""
    path = Path(ref)
    if path.is_file():
        return path
    shipped = SHIPPED_CONFIGS / f"{ref}.yaml"
    if shipped.is_file():
        return shipped
    raise ConfigError(
        f"config file {ref} does not exist, and it is not a shipped recipe ({', '.join(shipped_configs())})"
    )


def load_yaml(path: str | Path) -> dict:
    path = locate_config(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid yaml ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    return data


def resolve_config(cls: type[T], config_file: str | Path | None = None, overrides: dict | None = None) -> T:
    """defaults -> yaml (if given) -> overrides whose value is not None.

    `config_file`: a shipped recipe's name (`vlgen.config.shipped_configs()`) or a yaml path, such as the
    `config.yaml` a run saved beside its outputs. Unknown keys and values of the wrong type raise ConfigError.

    Example::

        import vlgen

        cfg = vlgen.resolve_config(vlgen.CaptionTrainConfig, "blip-diffusiondb", {"data": "data/ddb", "out": "runs/b"})
        print(cfg.model, cfg.learning_rate, cfg.epochs)
    """
    data: dict[str, Any] = {}
    if config_file is not None:
        config_file = locate_config(config_file)
        data.update({k.replace("-", "_"): v for k, v in load_yaml(config_file).items()})
        cfg = _from_dict(cls, data, str(config_file))
    else:
        cfg = cls()
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if given:
        hints = _field_types(cls)
        for k in given:
            if k not in hints:
                raise ConfigError(f"unknown option {k!r} for {cls.__name__}")
        given = {k: _coerce(v, hints[k], f"--{k.replace('_', '-')}") for k, v in given.items()}
        try:
            cfg = dataclasses.replace(cfg, **_nest(cls, given, base=cfg))
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None
    return cfg


def config_to_dict(cfg: Any) -> dict:
    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            d = {}
            for f in dataclasses.fields(v):
                x = getattr(v, f.name)
                if f.metadata.get("flat"):  # its options by their own names, as the CLI and older runs have them
                    d.update({i.name: plain(getattr(x, i.name)) for i in filter(_is_option, dataclasses.fields(x))})
                else:
                    d[f.name] = plain(x)
            return d
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def save_config(cfg: Any, out_dir: str | Path, name: str = RESOLVED_CONFIG_NAME) -> Path:
    """Write the resolved config as yaml next to a run's outputs (atomically)."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True)
    return atomic_write_text(Path(out_dir) / name, text)

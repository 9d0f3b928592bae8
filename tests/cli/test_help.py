"""`--help` of every command, rendered at 80 columns: no option name cut, every option described."""

from __future__ import annotations

import re

import pytest
import typer

from vlgen.cli import app, main


def _commands(cmd, path: tuple[str, ...] = ()):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _help(path: tuple[str, ...], monkeypatch, capsys) -> str:
    monkeypatch.setenv("COLUMNS", "80")
    assert main([*path, "--help"]) == 0
    return capsys.readouterr().out


def _options(cmd) -> list:
    # duck-typed: typer carries its own copy of click, whose classes are not `click.Option`
    options = [p for p in cmd.params if p.param_type_name == "option" and p.name != "help"]
    assert options or not cmd.params
    return options


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "vlgen")
def test_help_at_80_columns_names_every_option_whole_and_describes_it(path, monkeypatch, capsys):
    cmd = dict(COMMANDS)[path]
    text = _help(path, monkeypatch, capsys)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for opt in _options(cmd):
        for name in (*opt.opts, *opt.secondary_opts):
            assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), f"{' '.join(path)}: {name} cut"
        assert (opt.help or "").strip(), f"vlgen {' '.join(path)} {opt.opts[0]}: no description"


@pytest.mark.parametrize("command", ["caption", "lora"])
def test_training_options_show_their_default(command, monkeypatch, capsys):
    """Options generated from the config dataclasses: the default in brackets, or said in the description
    where it is "not given" (None)."""
    from vlgen.captioning.train_config import CaptionTrainConfig
    from vlgen.config import option_fields
    from vlgen.t2i.lora_config import LoraTrainConfig

    cls = {"caption": CaptionTrainConfig, "lora": LoraTrainConfig}[command]
    cmd = dict(COMMANDS)[("train", command)]
    by_name = {o.name: o for o in _options(cmd)}
    for fld, _ in option_fields(cls):  # CaptionTrainConfig.cnn_lstm's fields: --encoder, --attention, ...
        text = by_name[fld.name].help
        if fld.default in (None, ""):
            assert "default" in text.lower() or "required" in text.lower(), f"--{fld.name}: {text!r}"
        else:
            assert f"[default: {fld.default}]" in text, f"--{fld.name}: {text!r}"


def test_top_level_summaries_name_what_each_group_holds(monkeypatch, capsys):
    text = _help((), monkeypatch, capsys)
    train = next(line for line in text.splitlines() if line.strip().startswith("train "))
    assert "caption" in train.lower() and "lora" in train.lower(), train


@pytest.mark.parametrize(
    ("command", "name", "stored"),
    [
        ("caption", "cosine-with-restarts", "cosine_with_restarts"),
        ("lora", "cosine-with-restarts", "cosine_with_restarts"),
    ],
)
def test_readme_schedule_name_is_accepted(command, name, stored):
    from vlgen.captioning.train_config import CaptionTrainConfig
    from vlgen.config import resolve_config
    from vlgen.t2i.lora_config import LoraTrainConfig

    cls = {"caption": CaptionTrainConfig, "lora": LoraTrainConfig}[command]
    assert resolve_config(cls, None, {"lr_scheduler": name}).lr_scheduler == stored
    assert resolve_config(cls, None, {"lr_scheduler": stored}).lr_scheduler == stored  # the old names stay
    ctx = dict(COMMANDS)[("train", command)].make_context(command, ["--lr-scheduler", name])  # the CLI parses it
    assert ctx.params["lr_scheduler"] == name

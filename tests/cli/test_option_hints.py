"""Every `--option` that vlgen's messages, hints and help texts name is an option of some vlgen command
(issue 14: "pass `--weights none`" named an option that did not exist, and Gram had no offline route)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import typer

import vlgen
from vlgen.cli import app

SRC = Path(vlgen.__file__).parent
OPTION = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9_-]*")  # _: other tools' options (torchrun's)
# Options of other tools that a message may name, each with why. Keep it short and explicit.
OTHER_TOOLS: dict[str, str] = {
    "--foo-bar": "vlgen.cli._options' docstring: the example of how a field name becomes an option",
    "--no-foo-bar": "vlgen.cli._options' docstring: the same example, negated",
    "--nproc_per_node": "torchrun's, in vlgen.cli.caption's docstring (several captioning processes)",
    "--check": "`python -m vlgen.testing vocab --check`: the maintainers' tool that verifies the packaged test vocabs",
    "--remove_underscore": "kohya sd-scripts' tagger option, in vlgen.captioning.wd_tagger's docstring",
}


def cli_options() -> set[str]:
    """Every option name (and its --no- twin) of every vlgen command, read from the Click tree Typer builds."""
    found: set[str] = set()

    def walk(command) -> None:
        found.update(getattr(command, "context_settings", {}).get("help_option_names", []))
        for param in command.params:
            found.update(o for o in [*param.opts, *param.secondary_opts] if o.startswith("--"))
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    root = typer.main.get_command(app)
    walk(root)
    return found | {"--help"}


def _texts(tree: ast.AST):
    """(line, text) of every string literal; an f-string's replacement fields become '{}'."""
    inside_fstring = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                inside_fstring.add(id(value))
                parts.append(value.value if isinstance(value, ast.Constant) else "{}")
            yield node.lineno, "".join(parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inside_fstring:
            yield node.lineno, node.value


def mentioned_options() -> dict[str, list[str]]:
    """{'--option': ['file:line', ...]} for every option named in a string literal under src/vlgen."""
    found: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        for line, text in _texts(ast.parse(path.read_text(encoding="utf-8"))):
            for m in OPTION.finditer(text):
                after = text[m.end() : m.end() + 1]
                if after in ("{", ":") or text[max(0, m.start() - 4) : m.start()] == "var(":
                    continue  # an option name built from a template ('--no-{flag}'), or a CSS custom property
                found.setdefault(m.group().rstrip("-"), []).append(f"{path.relative_to(SRC.parent)}:{line}")
    return found


def test_the_walk_finds_options_in_messages_help_and_fstrings():
    """The scanner itself: it must see options in plain strings, f-strings and help texts, or it proves nothing."""
    found = mentioned_options()
    assert "--encoder-weights" in found  # the fixed hint in the CNN-LSTM encoder (an f-string argument)
    assert "--vgg-weights" in found and "--fit-vae" in found and "--overwrite" in found
    assert "--accent" not in found and "--no" not in found  # CSS variables and templates are not options
    assert {"--vgg-weights", "--encoder-weights", "--resume-from-checkpoint", "--verbose"} <= cli_options()


def test_every_option_a_message_names_exists():
    options = cli_options()
    missing = {
        name: where for name, where in mentioned_options().items() if name not in options and name not in OTHER_TOOLS
    }
    assert not missing, "messages name options that no vlgen command has: " + "; ".join(
        f"{name} ({', '.join(where[:3])})" for name, where in sorted(missing.items())
    )
    stale = [name for name in OTHER_TOOLS if name in options or name not in mentioned_options()]
    assert not stale, f"allow-list entries no longer needed: {stale}"


def test_offline_encoder_weights_hint_names_encoder_weights_none(monkeypatch, tmp_path):
    """`train caption` offline without ImageNet weights: the way out is `--encoder-weights none`."""
    from vlgen.captioning.cnn_lstm import CnnLstmConfig, build_encoder
    from vlgen.errors import ModelNotAvailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("torch.hub.get_dir", lambda: str(tmp_path / "empty-torch-hub"))
    with pytest.raises(ModelNotAvailableError) as info:
        build_encoder(CnnLstmConfig(encoder="resnet50"))
    assert "pass `--encoder-weights none`" in str(info.value)

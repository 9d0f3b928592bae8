"""Start-up rules: loopback without a key, anything else needs one; bad limits fail before models load."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vlgen.cli import main
from vlgen.errors import ConfigError
from vlgen.serving.settings import ServeSettings, is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    ServeSettings(host=host).check()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org"])
def test_other_hosts_need_a_key(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match="refusing to bind"):
        ServeSettings(host=host).check()
    ServeSettings(host=host, api_key="k" * 24).check()


@pytest.mark.parametrize(
    ("kw", "flag"),
    [
        ({"max_batch_size": 0}, "--max-batch-size"),
        ({"max_wait_ms": -1}, "--max-wait-ms"),
        ({"max_queue": 2, "max_batch_size": 4}, "--max-queue"),
        ({"max_body_mb": 0}, "--max-body-mb"),
        ({"max_side": 100}, "--max-side"),
        ({"lora": "some/dir"}, "--lora"),
        ({"api_key": "  "}, "--api-key"),
    ],
)
def test_bad_settings_name_the_flag(kw: dict, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        ServeSettings(**kw).check()


def test_public_dict_masks_the_key() -> None:
    assert ServeSettings(api_key="secret").public_dict()["api_key"] == "***"


def test_cli_refuses_public_host_without_key_in_process(capsys) -> None:
    # Fails on the settings check, before any model is resolved (the model name here does not exist).
    assert main(["serve", "--host", "0.0.0.0", "--caption-model", "/nonexistent/model"]) == 1
    err = capsys.readouterr().err
    assert "refusing to bind 0.0.0.0" in err and "Traceback" not in err


def test_cli_refuses_public_host_without_key_as_a_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vlgen", "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "VLGEN_API_KEY"},
    )
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "refusing to bind 0.0.0.0" in lines[0], proc.stderr


def test_serve_options_are_the_settings_fields(monkeypatch, capsys) -> None:
    """`vlgen serve`'s options are generated from ServeSettings: each field (but the caption request limits)
    is an option with the dataclass default, and what is given reaches the app (the key also from the env)."""
    import dataclasses

    import typer
    import uvicorn

    import vlgen.serving.app
    from vlgen.cli import app
    from vlgen.cli.serve import NOT_OPTIONS

    cmd = typer.main.get_command(app).commands["serve"]
    options = {p.name: p for p in cmd.params if p.name != "help"}
    fields = [f for f in dataclasses.fields(ServeSettings) if f.name not in NOT_OPTIONS]
    assert list(options) == [f.name for f in fields] + ["log_level"]
    for f in fields:
        assert options[f.name].opts == [f"--{f.name.replace('_', '-')}"]
        if f.default is not None:
            assert f"[default: {f.default}]" in options[f.name].help, f.name

    seen = {}
    monkeypatch.setattr(vlgen.serving.app, "create_app", lambda settings: seen.setdefault("settings", settings))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.setdefault("log_level", kw.get("log_level")))
    monkeypatch.setenv("VLGEN_API_KEY", "k" * 24)
    argv = ["serve", "--host", "0.0.0.0", "--port", "0", "--max-wait-ms", "5", "--max-steps", "7"]
    assert main([*argv, "--log-level", "warning"]) == 0
    assert seen["settings"] == ServeSettings(host="0.0.0.0", port=0, api_key="k" * 24, max_wait_ms=5.0, max_steps=7)
    assert seen["log_level"] == "warning"

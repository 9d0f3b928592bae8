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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from vlgen.config import resolve_config, save_config
from vlgen.errors import ConfigError


@dataclass
class Optim:
    lr: float = 1e-4
    weight_decay: float = 0.0


@dataclass
class RunConfig:
    model: str = "blip"
    epochs: int = 3
    scheduler: Literal["constant", "cosine"] = "constant"
    out: Path | None = None
    tags: list[str] = field(default_factory=list)
    optim: Optim = field(default_factory=Optim)


def test_defaults_then_yaml_then_cli(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("epochs: 10\nscheduler: cosine\noptim:\n  lr: 1e-5\n")
    cfg = resolve_config(RunConfig, cfg_file, {"epochs": 2, "model": None})
    assert cfg.epochs == 2  # CLI wins over yaml
    assert cfg.model == "blip"  # None means "not given": the default stays
    assert cfg.scheduler == "cosine"  # yaml wins over defaults
    assert cfg.optim.lr == 1e-5 and isinstance(cfg.optim.lr, float)  # yaml's "1e-5" string is a number
    assert resolve_config(RunConfig) == RunConfig()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("epoch: 3\n", r"unknown key 'epoch'"),
        ("epochs: three\n", r"epochs: expected an integer, got 'three'"),
        ("scheduler: linear\n", r"'linear' is not one of 'constant', 'cosine'"),
        ("optim:\n  lr: fast\n", r"optim.lr: expected a number"),
        ("- 1\n- 2\n", r"expected a mapping"),
        ("epochs: [1\n", r"not valid yaml"),
    ],
)
def test_bad_yaml_names_file_and_key(tmp_path, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        resolve_config(RunConfig, f)
    assert "bad.yaml" in str(e.value)


def test_bad_cli_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="--epochs: expected an integer"):
        resolve_config(RunConfig, None, {"epochs": "x"})
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config(RunConfig, tmp_path / "nope.yaml")


def test_saved_config_reloads_to_the_same_config(tmp_path):
    cfg = resolve_config(RunConfig, None, {"epochs": 7, "out": tmp_path, "tags": ["a"]})
    path = save_config(cfg, tmp_path / "run")
    assert path.name == "config.yaml"
    assert yaml.safe_load(path.read_text())["optim"] == {"lr": 1e-4, "weight_decay": 0.0}
    assert resolve_config(RunConfig, path) == cfg

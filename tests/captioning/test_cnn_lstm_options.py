"""The CNN-LSTM's hyper-parameters are declared once, in CnnLstmConfig (issue 16 item 4), and nested in
CaptionTrainConfig.cnn_lstm; a user still sets each by its own name - CLI option, flat or nested yaml key,
Python keyword - and an older run's flat config.yaml still loads and resumes."""

import dataclasses
import subprocess
import sys

import pytest
import yaml

from vlgen.captioning.cnn_lstm_config import CnnLstmConfig
from vlgen.captioning.train_config import CaptionTrainConfig
from vlgen.config import config_to_dict, option_fields, resolve_config
from vlgen.errors import ConfigError

# A value other than the default for every option of CnnLstmConfig; the test fails when one is added
# without a value here, i.e. without checking that it reaches the model.
NON_DEFAULT = {
    "encoder": "tiny",
    "encoder_weights": "none",
    "freeze_encoder": False,
    "attention": True,
    "image_size": 32,
    "embed_dim": 8,
    "hidden_dim": 16,
    "attention_dim": 12,
    "dropout": 0.1,
    "alpha_c": 0.5,
}
CLI_ARGS = [
    "--encoder", "tiny", "--encoder-weights", "none", "--no-freeze-encoder", "--attention", "--image-size", "32",
    "--embed-dim", "8", "--hidden-dim", "16", "--attention-dim", "12", "--dropout", "0.1", "--alpha-c", "0.5",
]  # fmt: skip

# config.yaml as `vlgen train caption` wrote it before the options were nested (flat keys; data and out are
# filled in by the test).
OLD_CONFIG_YAML = """\
model: cnn-lstm
data: {data}
out: {out}
caption_column: text
train_split: train
validation_split: null
epochs: 1
max_train_steps: null
train_batch_size: 32
eval_batch_size: 32
learning_rate: 0.001
weight_decay: 0.0
lr_scheduler: constant
lr_warmup_steps: 0
restart_epochs: 1
gradient_accumulation_steps: 1
max_grad_norm: 1.0
mixed_precision: 'no'
gradient_checkpointing: false
max_length: 40
seed: 42
checkpointing_steps: null
checkpoints_total_limit: 2
resume_from_checkpoint: null
overwrite_output_dir: false
early_stopping_patience: null
metric_for_best_model: loss
num_beams: 1
max_new_tokens: 30
report_to: none
num_workers: 0
cpu: true
encoder: tiny
encoder_weights: none
freeze_encoder: false
attention: true
image_size: 32
embed_dim: 8
hidden_dim: 16
attention_dim: 12
dropout: 0.1
alpha_c: 0.5
min_count: 1
cache_features: true
cache_dir: null
"""


def _options(cls) -> set[str]:
    return {f.name for f, _ in option_fields(cls)}


def test_each_cnn_lstm_setting_is_declared_once():
    own = {f.name for f in dataclasses.fields(CaptionTrainConfig)}
    model = _options(CnnLstmConfig)
    assert model == set(NON_DEFAULT)
    assert not own & model  # no flat copy in CaptionTrainConfig
    assert model <= _options(CaptionTrainConfig)  # ... yet each is an option of train caption, by its own name
    assert CaptionTrainConfig().cnn_lstm == CnnLstmConfig()  # one set of defaults


def test_every_setting_reaches_the_config_from_cli_yaml_and_python(tmp_path):
    import typer.main

    from vlgen.cli import app
    from vlgen.cli.train import HELP

    expected = dataclasses.replace(CnnLstmConfig(), **NON_DEFAULT)
    cmd = typer.main.get_command(app).commands["train"].commands["caption"]
    assert {p.name for p in cmd.params} >= set(NON_DEFAULT) and set(NON_DEFAULT) <= HELP.keys()
    params = cmd.make_context("caption", CLI_ARGS).params
    assert resolve_config(CaptionTrainConfig, None, params).cnn_lstm == expected
    flat, nested = tmp_path / "flat.yaml", tmp_path / "nested.yaml"
    flat.write_text(yaml.safe_dump(NON_DEFAULT))
    nested.write_text(yaml.safe_dump({"epochs": 2, "cnn_lstm": NON_DEFAULT}))
    assert resolve_config(CaptionTrainConfig, flat).cnn_lstm == expected
    assert resolve_config(CaptionTrainConfig, nested).cnn_lstm == expected
    cfg = CaptionTrainConfig(model="cnn-lstm", **NON_DEFAULT)  # the Python keywords of before
    assert cfg.cnn_lstm == expected and cfg.encoder == "tiny"
    cfg.hidden_dim = 24  # attribute aliases write through: no stray copy
    assert cfg.cnn_lstm.hidden_dim == 24 and dataclasses.replace(cfg, dropout=0.2).cnn_lstm.dropout == 0.2
    assert config_to_dict(cfg)["hidden_dim"] == 24 and "cnn_lstm" not in config_to_dict(cfg)  # saved flat
    copy = dataclasses.replace(cfg, epochs=3)  # shares nothing it can change: setting one leaves the other
    copy.hidden_dim = 48
    assert (cfg.hidden_dim, copy.hidden_dim) == (24, 48)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("encodr: tiny\n", r"unknown key 'encodr'"),
        ("cnn_lstm:\n  encodr: tiny\n", r"cnn_lstm: unknown key 'encodr'"),
        ("cnn_lstm:\n  vocab_size: 9\n", r"cnn_lstm: unknown key 'vocab_size'"),  # set by the vocabulary
        ("encoder: tiny\ncnn_lstm:\n  encoder: resnet50\n", r"'encoder' is given twice"),
        ("encoder: vgg16\n", r"encoder 'vgg16' is not one of"),
        ("hidden_dim: big\n", r"hidden_dim: expected an integer"),
    ],
)
def test_bad_keys_fail_in_one_line_naming_the_key(tmp_path, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        resolve_config(CaptionTrainConfig, f)
    assert "bad.yaml" in str(e.value) and "\n" not in str(e.value)


def test_train_config_imports_without_torch():
    code = "import sys, vlgen.captioning.train_config, vlgen.cli.train; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_every_setting_reaches_the_model(tmp_path):
    from vlgen.captioning.trainer import build_captioner
    from vlgen.data.records import Record

    cfg = CaptionTrainConfig(model="cnn-lstm", max_length=20, **NON_DEFAULT)
    records = [Record(file_name="a.png", captions=["a red circle"])]
    model_cfg = build_captioner(cfg, records).model.config
    assert {k: getattr(model_cfg, k) for k in NON_DEFAULT} == NON_DEFAULT
    assert model_cfg.max_length == 20  # the train config's one max_length


def test_an_older_runs_flat_config_yaml_loads_and_resumes(tmp_path):
    from vlgen.captioning.trainer import train_captioner
    from vlgen.data.synth import synth_dataset

    data, out = tmp_path / "data", tmp_path / "run"
    synth_dataset(data, n=8, seed=0, image_size=32, progress=False)
    old = OLD_CONFIG_YAML.format(data=data, out=out)
    (tmp_path / "old.yaml").write_text(old)
    cfg = resolve_config(CaptionTrainConfig, tmp_path / "old.yaml")
    assert cfg.cnn_lstm == dataclasses.replace(CnnLstmConfig(), **NON_DEFAULT)
    assert config_to_dict(cfg) == yaml.safe_load(old)  # saved as before, key for key
    assert train_captioner(cfg)["steps"] == 1
    (out / "config.yaml").write_text(old)  # as an older vlgen left it
    resumed = resolve_config(CaptionTrainConfig, out / "config.yaml", {"epochs": 2, "resume_from_checkpoint": "latest"})
    assert train_captioner(resumed)["steps"] == 2  # the saved config equals this one: no "options differ"

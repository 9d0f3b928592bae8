"""`train lora --output-dir`: another run's folder is refused, a resume must continue the same run, and options
that cannot work on this machine fail before any model loads - each in one line naming the way out."""

from __future__ import annotations

import pytest

from vlgen.cli import main
from vlgen.config import resolve_config, save_config
from vlgen.t2i.lora_config import LoraTrainConfig


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len([x for x in err.strip().splitlines() if x.startswith("error:")]) == 1, err
    return " ".join(err.split())


def _args(icons, out, **extra) -> list[str]:
    args = ["train", "lora", "--base", "/nonexistent/sdxl", "--data", str(icons), "--out", str(out)]
    args += ["--instance-prompt", "a 3D icon in the style of TOK", "--resolution", "64"]
    for k, v in extra.items():
        args += [f"--{k.replace('_', '-')}", *([] if v is True else [str(v)])]
    return args


def test_output_dir_holding_another_run_is_refused_untouched(icons, tmp_path, capsys):
    out = tmp_path / "lora"
    (out / "checkpoints" / "checkpoint-18").mkdir(parents=True)
    (out / "config.yaml").write_text("rank: 4\n")
    assert main(_args(icons, out)) == 1
    err = _error_line(capsys)
    assert str(out) in err and "--overwrite-output-dir" in err and "--resume-from-checkpoint" in err
    assert (out / "checkpoints" / "checkpoint-18").is_dir() and (out / "config.yaml").read_text() == "rank: 4\n"


def test_resume_names_the_options_that_differ_from_the_resumed_run(icons, tmp_path, capsys):
    out = tmp_path / "lora"
    overrides = {"pretrained_model_name_or_path": "/nonexistent/sdxl", "instance_data_dir": str(icons)}
    overrides |= {"output_dir": str(out), "instance_prompt": "a 3D icon in the style of TOK", "resolution": 64}
    save_config(resolve_config(LoraTrainConfig, None, {**overrides, "rank": 8}), out)

    assert main(_args(icons, out, rank=4, resume_from_checkpoint="latest")) == 1
    err = _error_line(capsys)
    assert "rank: 8 -> 4" in err and "--overwrite-output-dir" in err

    # Same options, a longer run and other checkpointing: the check passes (and the missing base fails next).
    args = _args(icons, out, rank=8, resume_from_checkpoint="latest", max_train_steps=9, checkpointing_steps=3)
    assert main(args) == 1
    err = _error_line(capsys)
    assert "/nonexistent/sdxl" in err and "differ" not in err


def test_overwrite_and_resume_together_are_refused(icons, tmp_path, capsys):
    assert main(_args(icons, tmp_path / "o", overwrite_output_dir=True, resume_from_checkpoint="latest")) == 1
    assert "pass one of them" in _error_line(capsys)


def test_use_8bit_adam_without_bitsandbytes_names_the_option_that_turns_it_off(icons, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # `import bitsandbytes` raises ImportError
    assert main(_args(icons, tmp_path / "o", use_8bit_adam=True)) == 1
    err = _error_line(capsys)
    assert "--no-use-8bit-adam" in err and "pip install bitsandbytes" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("num_inference_steps", 0, "--num-inference-steps must be at least 1, got 0"),
        ("num_validation_images", -1, "--num-validation-images must be 0 or more, got -1"),
    ],
)
def test_options_first_used_after_training_fail_before_it(icons, tmp_path, capsys, option, value, message):
    assert main(_args(icons, tmp_path / "o", **{option: value})) == 1
    assert message in _error_line(capsys)
    assert not (tmp_path / "o").exists()

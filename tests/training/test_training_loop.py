"""The shared training loop's own rules (vlgen.training.loop), on tiny models in one process."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest

from vlgen.cli import main
from vlgen.data.synth import synth_dataset
from vlgen.errors import ConfigError
from vlgen.training.loop import LoopSettings, TrainingLoop, shard, write_history

TINY_CNN_LSTM = [
    "--encoder", "tiny", "--encoder-weights", "none", "--no-freeze-encoder", "--attention",
    "--image-size", "32", "--embed-dim", "16", "--hidden-dim", "32", "--attention-dim", "16",
]  # fmt: skip


def test_each_process_takes_every_nth_sample_and_none_is_left_without():
    assert [shard([0, 1, 2, 3, 4], r, 2) for r in (0, 1)] == [[0, 2, 4], [1, 3]]
    assert [shard([7], r, 2) for r in (0, 1)] == [[7], [7]]  # a last batch shorter than the process count
    assert shard([3, 4], 0, 1) == [3, 4]


def test_history_has_every_key_any_row_has(tmp_path):
    write_history(tmp_path, [{"step": 1, "train_loss": 2.0}, {"step": 1, "val_loss": 1.5}])
    with open(tmp_path / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [
        {"step": "1", "train_loss": "2.0", "val_loss": ""},
        {"step": "1", "train_loss": "", "val_loss": "1.5"},
    ]
    assert (tmp_path / "curves.png").is_file()


def _fake_accelerator(zero_stage: int):
    plugin = SimpleNamespace(zero_stage=zero_stage)
    return SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin), num_processes=1, process_index=0)


def _loop(accelerator, resume: str | None, logged: list[str]) -> TrainingLoop:
    settings = LoopSettings(
        seed=0, gradient_accumulation_steps=1, max_grad_norm=None, checkpointing_steps=None,
        checkpoints_total_limit=None, resume_from_checkpoint=resume,
    )  # fmt: skip
    return TrainingLoop(
        accelerator, settings, ckpt_root=None, models=[], checkpoint_module=None, params=[], optimizer=None,
        scheduler=None, total_steps=4, steps_per_epoch=2, log=logged.append,
    )  # fmt: skip


def test_deepspeed_zero_refuses_resume_in_one_line_and_writes_no_checkpoints():
    with pytest.raises(ConfigError, match="not supported under DeepSpeed ZeRO stage 2"):
        _loop(_fake_accelerator(2), "latest", [])
    logged: list[str] = []
    loop = _loop(_fake_accelerator(3), None, logged)
    assert not loop.checkpoints and "no resumable checkpoints" in logged[0]
    loop.checkpoint(1, {})  # nothing happens: no collective, no file
    assert _loop(_fake_accelerator(0), "latest", []).checkpoints  # stage 0: plain data parallel


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "data"
    synth_dataset(out, n=16, seed=0, image_size=32, progress=False)
    return out


def test_num_workers_decode_in_other_processes_without_changing_training(synth, tmp_path):
    """--num-workers 2 builds the batches in worker processes: the run is the same, bit for bit, as with none."""
    common = ["train", "caption", "--data", str(synth), *TINY_CNN_LSTM, "--epochs", "2", "--seed", "1"]
    common += ["--train-batch-size", "4", "--metric-for-best-model", "loss", "--dropout", "0.3"]
    for workers in (0, 2):
        assert main([*common, "--out", str(tmp_path / f"w{workers}"), "--num-workers", str(workers)]) == 0
    assert (tmp_path / "w0" / "history.csv").read_text() == (tmp_path / "w2" / "history.csv").read_text()
    a, b = ((tmp_path / f"w{w}" / "last" / "model.safetensors").read_bytes() for w in (0, 2))
    assert a == b

"""The options the LoRA trainers users compare vlgen with share (issue 17 item 6), on tiny SD 1.5 (CPU):
--use-dora, --caption-dropout-rate, --use-ema, and validation that measures (--validation-metrics,
--metric-for-best-model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from t2ihelpers import TRIGGER

from vlgen.errors import ConfigError
from vlgen.t2i.lora_config import LoraTrainConfig
from vlgen.t2i.lora_export import DIFFUSERS_WEIGHT_NAME
from vlgen.t2i.lora_trainer import LoraTrainer, step_generator


def _cfg(data, out, base, **kw) -> LoraTrainConfig:
    settings = dict(
        pretrained_model_name_or_path=str(base), instance_data_dir=str(data), output_dir=str(out),
        instance_prompt=TRIGGER, resolution=64, train_batch_size=2, learning_rate=5e-3, snr_gamma=5.0,
        max_train_steps=6, num_inference_steps=2, num_validation_images=1, checkpointing_steps=1000,
    )  # fmt: skip
    settings.update(kw)
    return LoraTrainConfig(**settings)


def _image(pipe, seed: int = 0) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    return np.asarray(pipe(TRIGGER, num_inference_steps=2, height=64, width=64, generator=g).images[0]).astype(int)


def _loaded_image(base, lora_file) -> np.ndarray:
    from vlgen.t2i.generate import apply_lora, load_pipeline

    pipe = load_pipeline(str(base), device="cpu")
    apply_lora(pipe, lora_file, 1.0)
    return _image(pipe)


@pytest.fixture(scope="module")
def dora_run(icons, tiny_sd15_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("dora") / "run"
    trainer = LoraTrainer(_cfg(icons, out, tiny_sd15_dir, use_dora=True))
    trainer.train()
    return trainer, out


def test_dora_saves_magnitudes_and_reloads_to_the_trained_model(dora_run, tiny_sd15_dir):
    trainer, out = dora_run
    from safetensors import safe_open

    keys = list(safe_open(str(out / DIFFUSERS_WEIGHT_NAME), "pt").keys())
    assert any(k.startswith("unet.") and k.endswith("lora_magnitude_vector") for k in keys)
    trained = _image(trainer.pipeline())
    assert np.array_equal(_loaded_image(tiny_sd15_dir, out / DIFFUSERS_WEIGHT_NAME), trained)


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"export_format": "kohya"}, "--use-dora .*kohya"), ({"train_text_encoder": True}, "--use-dora applies to")],
)
def test_dora_where_it_cannot_be_saved_is_refused_before_loading(icons, tiny_sd15_dir, tmp_path, kw, message):
    with pytest.raises(ConfigError, match=message):
        LoraTrainer(_cfg(icons, tmp_path / "o", tiny_sd15_dir, use_dora=True, **kw))


def test_caption_dropout_trains_on_the_empty_prompt_at_its_rate(icons, tiny_sd15_dir, tmp_path):
    trainer = LoraTrainer(_cfg(icons, tmp_path / "o", tiny_sd15_dir, caption_dropout_rate=0.5))
    trainer.setup()
    data = trainer.data
    empty = data._text[""]["prompt_embeds"]
    instance = data._text[TRIGGER]["prompt_embeds"]
    dropped = 0
    for b in range(40):
        batch = data.batch([0, 1], step_generator(0, 0, b))
        for row in batch["cond"]["prompt_embeds"]:
            assert torch.equal(row, empty) or torch.equal(row, instance)
            dropped += int(torch.equal(row, empty))
    assert 25 <= dropped <= 55  # 80 draws at p = 0.5
    # the same generator, the same batch: dropout is part of the seeded draws, so resuming reproduces it
    a, b = (data.batch([0, 1], step_generator(0, 3, 7))["cond"]["prompt_embeds"] for _ in range(2))
    assert torch.equal(a, b)


def test_caption_dropout_rate_out_of_range_is_refused(icons, tiny_sd15_dir, tmp_path):
    with pytest.raises(ConfigError, match="--caption-dropout-rate"):
        LoraTrainer(_cfg(icons, tmp_path / "o", tiny_sd15_dir, caption_dropout_rate=1.0))


@pytest.fixture(scope="module")
def ema_run(icons, tiny_sd15_dir, tiny_clip_dir, tiny_dino_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ema") / "run"
    cfg = _cfg(
        icons, out, tiny_sd15_dir, use_ema=True, ema_decay=0.9, validation_metrics="all", metric_for_best_model="DINO",
        clip_model=str(tiny_clip_dir), dino_model=str(tiny_dino_dir), validation_prompt=TRIGGER, validation_steps=3,
        checkpointing_steps=3, num_validation_images=2,
    )  # fmt: skip
    summary = LoraTrainer(cfg).train()
    return cfg, out, summary


def test_ema_weights_in_the_root_raw_weights_beside(ema_run, tiny_sd15_dir):
    from safetensors.torch import load_file

    _, out, summary = ema_run
    ema, raw = load_file(out / DIFFUSERS_WEIGHT_NAME), load_file(out / "raw" / DIFFUSERS_WEIGHT_NAME)
    assert ema.keys() == raw.keys() and summary["ema"] is True
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)  # the average lags the last step
    assert not np.array_equal(
        _loaded_image(tiny_sd15_dir, out / DIFFUSERS_WEIGHT_NAME),
        _loaded_image(tiny_sd15_dir, out / "raw" / DIFFUSERS_WEIGHT_NAME),
    )


def test_ema_state_is_in_checkpoints_and_a_resumed_run_ends_identical(ema_run, tmp_path):
    import dataclasses
    import shutil

    from safetensors.torch import load_file

    cfg, out, _ = ema_run
    assert any(k.startswith("ema.") for k in load_file(out / "checkpoints" / "checkpoint-3" / "model.safetensors"))
    # a second run resumed from step 3 of the first: the same EMA and raw weights at step 6
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(out / "config.yaml", resumed / "config.yaml")
    shutil.copytree(out / "checkpoints" / "checkpoint-3", resumed / "checkpoints" / "checkpoint-3")
    LoraTrainer(dataclasses.replace(cfg, output_dir=str(resumed), resume_from_checkpoint="latest")).train()
    for name in (DIFFUSERS_WEIGHT_NAME, f"raw/{DIFFUSERS_WEIGHT_NAME}"):
        a, b = load_file(out / name), load_file(resumed / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_validation_metrics_are_scored_plotted_and_the_best_lora_is_kept(ema_run):
    _, out, summary = ema_run
    rows = (out / "history.csv").read_text().splitlines()
    assert rows[0].split(",")[-3:] == ["CLIP-T", "CLIP-I", "DINO"]
    scored = [r.split(",") for r in rows[1:] if r.split(",")[-1]]
    assert [int(r[0]) for r in scored] == [3, 6]  # every --validation-steps, the last one at the end
    for r in scored:
        clip_t, clip_i, dino = map(float, r[-3:])
        assert 0 <= clip_t <= 100 and -1 <= clip_i <= 1 and -1 <= dino <= 1
    best = summary["best"]
    assert best["metric"] == "DINO" and best["step"] in (3, 6)
    assert best["value"] == max(float(r[-1]) for r in scored)
    assert (out / "best" / DIFFUSERS_WEIGHT_NAME).is_file()
    assert json.loads((out / "train_summary.json").read_text())["validation_metrics"].keys() == {
        "CLIP-T",
        "CLIP-I",
        "DINO",
    }


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"validation_metrics": "CLIP-T,FID"}, "--validation-metrics"),
        ({"validation_metrics": "CLIP-T", "metric_for_best_model": "DINO"}, "--metric-for-best-model DINO"),
        ({"validation_metrics": "all", "num_validation_images": 0}, "--num-validation-images"),
    ],
)
def test_bad_validation_options_fail_before_loading(icons, tiny_sd15_dir, tmp_path, kw, message):
    with pytest.raises(ConfigError, match=message):
        LoraTrainer(_cfg(icons, tmp_path / "o", tiny_sd15_dir, **kw))


def test_8bit_adamw_trains_on_cpu_and_resumes_bit_identical(icons, tiny_sd15_dir, tmp_path):
    """bitsandbytes' AdamW8bit (the lock's 0.50 runs on CPU): its quantised state is in the checkpoints, so a run
    resumed from step 2 ends where the uninterrupted one does."""
    import dataclasses
    import shutil

    from safetensors.torch import load_file

    cfg = _cfg(icons, tmp_path / "ref", tiny_sd15_dir, use_8bit_adam=True, max_train_steps=4, checkpointing_steps=2,
               num_validation_images=0)  # fmt: skip
    trainer = LoraTrainer(cfg)
    summary = trainer.train()
    assert (
        type(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer).__name__
        == "AdamW8bit"
    )
    assert summary["final_train_loss"] is not None and np.isfinite(summary["final_train_loss"])
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(tmp_path / "ref" / "config.yaml", resumed / "config.yaml")
    shutil.copytree(tmp_path / "ref" / "checkpoints" / "checkpoint-2", resumed / "checkpoints" / "checkpoint-2")
    LoraTrainer(dataclasses.replace(cfg, output_dir=str(resumed), resume_from_checkpoint="latest")).train()
    a, b = load_file(tmp_path / "ref" / DIFFUSERS_WEIGHT_NAME), load_file(resumed / DIFFUSERS_WEIGHT_NAME)
    assert all(torch.equal(a[k], b[k]) for k in a)

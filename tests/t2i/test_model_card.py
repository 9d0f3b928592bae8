"""The model card's Python snippet runs as written, for every VAE a LoRA can be trained with (issue 14):
the base's own (the default, and `--vae none`) and a separate VAE folder."""

from __future__ import annotations

import dataclasses
import re

import pytest
from t2ihelpers import TRIGGER

from vlgen.t2i.model_card import model_card


def _snippet(card: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    assert len(blocks) == 1, card
    return blocks[0]


def _run_snippet(code: str, workdir, monkeypatch, steps: int | None = None) -> None:
    """Execute the card's code in a fresh namespace; `steps` only shortens the denoising loop (CPU time)."""
    if steps is not None:
        # the family's default step count (SDXL: 30)
        assert "num_inference_steps=30" in code
        code = code.replace("num_inference_steps=30", f"num_inference_steps={steps}")
    monkeypatch.chdir(workdir)
    exec(compile(code, "<model card>", "exec"), {"__name__": "__card__"})
    assert (workdir / "lora_sample.png").is_file()


@pytest.mark.parametrize("vae", ["own", "none", "separate"])
def test_card_snippet_runs_for_each_vae(vae, trained, tiny_sdxl_vae_dir, tmp_path, monkeypatch):
    trainer, out, *_ = trained
    ref = {"own": None, "none": "none", "separate": str(tiny_sdxl_vae_dir)}[vae]
    cfg = dataclasses.replace(trainer.cfg, pretrained_vae_model_name_or_path=ref)
    card = model_card(cfg, steps=30, vae=ref, samples=None, sample_prompt=None, kohya=False, final_loss=None)
    code = _snippet(card)
    assert "THIS_DIRECTORY" not in code and str(out.resolve()) in code  # the run's own LoRA folder
    assert ("AutoencoderKL" in code) == (vae == "separate")  # the base's own VAE stays the pipeline's vae/
    assert "the base model's own" in card if vae != "separate" else str(tiny_sdxl_vae_dir) in card
    _run_snippet(code, tmp_path, monkeypatch, steps=2)


def test_card_snippet_with_a_whole_pipeline_as_the_vae_loads_its_vae_subfolder(trained, tiny_sdxl_dir, tmp_path):
    trainer, *_ = trained
    cfg = dataclasses.replace(trainer.cfg, pretrained_vae_model_name_or_path=str(tiny_sdxl_dir))
    code = _snippet(model_card(cfg, steps=1, vae=str(tiny_sdxl_dir), samples=None, sample_prompt=None, kohya=False,
                               final_loss=None))  # fmt: skip
    assert f'AutoencoderKL.from_pretrained("{tiny_sdxl_dir}", subfolder="vae", torch_dtype=dtype)' in code


def test_card_quotes_the_prompt_as_a_python_string(trained):
    trainer, *_ = trained
    cfg = dataclasses.replace(trainer.cfg, instance_prompt='a "3D" icon\\of TOK')
    code = _snippet(model_card(cfg, steps=1, vae=None, samples=None, sample_prompt=None, kohya=False, final_loss=None))
    assert 'pipe("a \\"3D\\" icon\\\\of TOK", num_inference_steps=30)' in code
    compile(code, "<model card>", "exec")


@pytest.mark.slow
def test_card_of_a_vae_none_run_works_as_written(icons, tiny_sdxl_dir, tmp_path, monkeypatch):
    """End to end: `vlgen train lora --vae none`, then the README's code exactly as written (25 steps)."""
    from vlgen.cli import main

    out = tmp_path / "lora"
    args = ["train", "lora", "--base", str(tiny_sdxl_dir), "--vae", "none", "--data", str(icons), "--out", str(out)]
    args += ["--instance-prompt", TRIGGER, "--resolution", "64", "--max-train-steps", "2", "--train-batch-size", "2"]
    args += ["--num-validation-images", "1", "--num-inference-steps", "2"]
    assert main(args) == 0
    _run_snippet(_snippet((out / "README.md").read_text()), tmp_path, monkeypatch)

"""Everything a LoRA run leaves in --output-dir once training ends.

pytorch_lora_weights.safetensors         diffusers keys (`pipeline.load_lora_weights(OUT)`); with --use-ema the
                                         EMA weights (what to generate with)
pytorch_lora_weights_kohya.safetensors   kohya keys for ComfyUI/A1111 (--export-format kohya)
raw/                                     with --use-ema: the raw (non-EMA) weights, same files
best/                                    with --metric-for-best-model: the LoRA of the best validation
validation/final/*.png, samples.png      images of the validation (else instance) prompt; their grid
README.md                                model card
config.yaml                              the resolved config (written at the start)
history.csv, curves.png                  training loss per step
train_summary.json                       steps, seconds, final loss, timings
checkpoints/checkpoint-N/                resumable state (--checkpointing-steps)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlgen.fileio import write_json
from vlgen.training.loop import write_history

if TYPE_CHECKING:
    from vlgen.t2i.lora_trainer import LoraTrainer


def save_lora_files(trainer: LoraTrainer, folder: Path) -> list[str]:
    """The LoRA as the model holds it now: diffusers' file, and kohya's with --export-format kohya."""
    from vlgen.t2i.lora_export import save_diffusers_lora, save_kohya_lora

    cfg = trainer.cfg
    folder.mkdir(parents=True, exist_ok=True)
    models = {k: trainer.acc.unwrap_model(m) for k, m in trainer.trained.items()}
    files = [save_diffusers_lora(folder, models, trainer.family).name]
    if cfg.export_format == "kohya":
        meta = {"ss_output_name": trainer.out.name, "ss_training_comment": f"trigger: {cfg.instance_prompt}"}
        files.append(save_kohya_lora(folder, models, meta, trainer.family).name)
    return files


def write_outputs(trainer: LoraTrainer, state: dict[str, Any], seconds: float) -> dict[str, Any]:
    from PIL import Image

    from vlgen.t2i.grid import image_grid
    from vlgen.t2i.model_card import write_model_card
    from vlgen.t2i.validation_metrics import score_images

    cfg, out = trainer.cfg, trainer.out
    family = trainer.family
    if trainer.ema is not None:
        save_lora_files(trainer, out / "raw")
        trainer.ema.copy_to(list(trainer.trainable.parameters()))  # from here on the model holds the EMA weights
    files = save_lora_files(trainer, out)

    prompt = cfg.validation_prompt or cfg.instance_prompt
    paths = trainer.validate("final", prompt)
    scores = score_images(trainer, paths) if paths else {}
    if scores and state["history"]:
        state["history"][-1].update(scores)
    key = cfg.metric_for_best_model
    if key and key in scores and (state.get("best") is None or scores[key] > state["best"]["value"]):
        save_lora_files(trainer, out / "best")  # the final weights are the best so far
        state["best"] = {"metric": key, "value": scores[key], "step": state["global_step"]}
    write_history(out, state["history"], title="DreamBooth-LoRA training loss")
    samples = None
    if paths:
        grid = image_grid([[Image.open(p) for p in paths]])
        grid.save(out / "samples.png")
        samples = "samples.png"
    final_loss = next((h["train_loss"] for h in reversed(state["history"])), None)
    write_model_card(
        out,
        cfg=cfg,
        steps=state["global_step"],
        vae=trainer.parts.vae_ref,
        samples=samples,
        sample_prompt=prompt,
        kohya=cfg.export_format == "kohya",
        final_loss=final_loss,
        family=family,
        denoiser_config=trainer.parts.denoiser.config,
    )
    times = trainer.step_times
    summary = {
        "steps": state["global_step"],
        "seconds": round(seconds, 2),
        "final_train_loss": final_loss,
        "files": files,
        "setup_s": round(trainer.timings.get("setup_s", 0.0), 3),
        "caches_s": round(trainer.timings.get("caches_s", 0.0), 3),
        "mean_step_s": round(sum(times) / len(times), 4) if times else None,
        "num_processes": trainer.acc.num_processes,
        "family": family.name,
        **({"validation_metrics": scores} if scores else {}),
        **({"best": state["best"]} if state.get("best") else {}),
        **({"ema": True} if trainer.ema is not None else {}),
    }
    write_json(out / "train_summary.json", summary)
    return summary

"""benchmarks/bench_lora_b3.py (issue 17 item 7, B3): the reduced FLUX.1-dev it builds, and the two commands it runs.

The benchmark itself (minutes of training runs, diffusers' script from outside the repository) is never run in
the fast suite: these check that benchmarks/reduced-flux/ builds into a FluxPipeline with FLUX.1-dev's block
structure at the stated sizes, and that `vlgen train lora` and train_dreambooth_lora_flux.py are given the same
settings, as its docstring says. The slow test runs the benchmark's own path (vlgen only, 3 steps).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "benchmarks" / "reduced-flux"


def _bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_lora_b3
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return bench_lora_b3


def test_reduced_config_builds_a_flux_dev_pipeline(tmp_path):
    import torch
    from diffusers import FluxPipeline

    from vlgen.t2i.families import family_of_path

    bench = _bench()
    model = bench.build_model(CONFIGS, tmp_path / "flux")
    assert family_of_path(model).name == "flux"  # what `vlgen train lora` reads from model_index.json
    pipe = FluxPipeline.from_pretrained(model)
    tr, t5, clip, vae = pipe.transformer, pipe.text_encoder_2, pipe.text_encoder, pipe.vae
    c = tr.config
    assert (len(tr.transformer_blocks), len(tr.single_transformer_blocks)) == (2, 4)  # double / single stream
    assert c.guidance_embeds and tr.time_text_embed.guidance_embedder is not None  # FLUX.1-dev, not schnell
    assert (c.num_attention_heads, c.attention_head_dim, sum(c.axes_dims_rope)) == (4, 64, 64)
    assert c.in_channels == 4 * vae.config.latent_channels == 64  # 16 channels in 2x2 patches
    assert c.joint_attention_dim == t5.config.d_model == 256 and c.pooled_projection_dim == clip.config.hidden_size
    assert type(t5).__name__ == "T5EncoderModel" and len(t5.encoder.block) == 4
    assert t5.config.feed_forward_proj == "gated-gelu" and t5.config.d_ff == 640
    assert type(clip).__name__ == "CLIPTextModel" and len(getattr(clip, "text_model", clip).encoder.layers) == 4
    assert len(vae.config.block_out_channels) == 4 and pipe.vae_scale_factor == 8
    assert (vae.config.scaling_factor, vae.config.shift_factor) == (0.3611, 0.1159) and vae.quant_conv is None
    assert pipe.scheduler.config.shift == 3.0 and pipe.scheduler.config.use_dynamic_shifting
    assert 8e6 < sum(p.numel() for p in tr.parameters()) < 1.1e7  # 9.3M (FLUX.1-dev: 11.9B)

    # One 256 px forward pass with the benchmark's prompt, T5 length 128: the widths fit together.
    with torch.no_grad():
        embeds, pooled, text_ids = pipe.encode_prompt(bench.TRIGGER, prompt_2=None, max_sequence_length=128)
        latents = torch.randn(1, 16, 32, 32)  # 256 px / 8
        out = tr(
            hidden_states=FluxPipeline._pack_latents(latents, 1, 16, 32, 32),
            timestep=torch.tensor([0.5]),
            guidance=torch.tensor([1.0]),
            pooled_projections=pooled,
            encoder_hidden_states=embeds,
            txt_ids=text_ids,
            img_ids=FluxPipeline._prepare_latent_image_ids(1, 16, 16, "cpu", torch.float32),
            return_dict=False,
        )[0]
    assert embeds.shape == (1, 128, 256) and pooled.shape == (1, 256)
    assert out.shape == (1, 256, 64) and torch.isfinite(out).all()

    # Built once per config: a second call reuses the directory; another seed gives other weights.
    assert bench.build_model(CONFIGS, model) == model
    other = FluxPipeline.from_pretrained(bench.build_model(CONFIGS, tmp_path / "seed1", seed=1))
    assert not torch.equal(other.transformer.x_embedder.weight, tr.x_embedder.weight)


def test_config_that_misfits_the_tokenizers_is_refused(tmp_path):
    import shutil

    bench = _bench()
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    te = configs / "text_encoder" / "config.json"
    te.write_text(te.read_text().replace('"vocab_size": 742', '"vocab_size": 700'))
    with pytest.raises(SystemExit, match="does not fit vlgen.testing.clip.clip_tokenizer"):
        bench.build_model(configs, tmp_path / "flux")
    assert bench.configs_digest(configs) != bench.configs_digest(CONFIGS)  # a rebuilt model, not a stale one


def _options(argv: list[str]) -> dict[str, str | bool]:
    """`--name value` / `--flag` pairs as {name: value or True}, hyphens as underscores."""
    opts: dict[str, str | bool] = {}
    i = 0
    while i < len(argv):
        assert argv[i].startswith("--"), argv[i]
        name = argv[i][2:].replace("-", "_")
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            opts[name], i = argv[i + 1], i + 2
        else:
            opts[name], i = True, i + 1
    return opts


def test_dry_run_gives_both_tools_the_same_settings(tmp_path, capsys):
    import typer

    from vlgen.cli import app

    bench = _bench()
    script = str(tmp_path / "train_dreambooth_lora_flux.py")
    bench.main(["--dry-run", "--work", str(tmp_path), "--steps", "7", "--max-sequence-length", "64",
                "--diffusers-script", script])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert [x for x in lines if x.startswith("#")] == [
        "# vlgen, gradient checkpointing False", "# diffusers, gradient checkpointing False",
        "# vlgen, gradient checkpointing True", "# diffusers, gradient checkpointing True",
    ]  # fmt: skip
    commands = [shlex.split(x) for x in lines if not x.startswith("#")]
    lora = typer.main.get_command(app).get_command(None, "train").get_command(None, "lora")
    for gc, (vl, df) in enumerate(zip(commands[::2], commands[1::2], strict=True)):
        assert vl[1:5] == ["-m", "vlgen", "train", "lora"] and df[1] == script
        v = lora.make_context("lora", vl[5:]).params  # parsed by the real CLI: every option exists
        d = _options(df[2:])
        assert v["pretrained_model_name_or_path"] == d["pretrained_model_name_or_path"]
        assert Path(v["pretrained_model_name_or_path"]).name.startswith("reduced-flux-seed0-")
        # the same 8 PNGs: vlgen reads the icons' folder, the script a folder of links to the PNGs alone
        assert d["instance_data_dir"] == v["instance_data_dir"] + "-images"
        assert v["output_dir"] != d["output_dir"]
        expected = {"instance_prompt": "a 3D icon in the style of TOK", "resolution": 256, "train_batch_size": 1,
                    "gradient_accumulation_steps": 1, "rank": 4, "learning_rate": 1e-4, "lr_scheduler": "constant",
                    "lr_warmup_steps": 0, "max_train_steps": 7, "mixed_precision": "no", "seed": 0,
                    "max_sequence_length": 64, "guidance_scale": 1.0, "weighting_scheme": "none",
                    "checkpointing_steps": 100000}  # fmt: skip
        for name, value in expected.items():
            assert v[name] == value, name
            assert type(value)(d[name]) == value, name
        assert v["gradient_checkpointing"] is bool(gc) and d.get("gradient_checkpointing", False) is bool(gc)
        assert v["cache_latents"] and v["cache_text_embeddings"] and d["cache_latents"] is True
        assert v["num_validation_images"] == 0 and not v["train_text_encoder"] and v["caption_column"] is None
        # the script precomputes the prompt only without per-image captions and a trained text encoder
        assert not {"validation_prompt", "caption_column", "dataset_name", "train_text_encoder"} & set(d)
        assert set(d) == set(expected) | {"pretrained_model_name_or_path", "instance_data_dir", "output_dir",
                                          "cache_latents"} | ({"gradient_checkpointing"} if gc else set())  # fmt: skip


def test_help_lists_the_options():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_lora_b3.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for option in ("--configs", "--steps", "--repeats", "--variants", "--max-sequence-length", "--threads",
                   "--diffusers-script", "--dry-run", "--out"):  # fmt: skip
        assert option in proc.stdout


@pytest.mark.slow
def test_vlgen_run_writes_the_json(tmp_path):
    out = tmp_path / "b3.json"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_lora_b3.py"), "--steps", "3", "--first-timed-step", "2",
         "--max-sequence-length", "16", "--variants", "1", "--work", str(tmp_path), "--out", str(out)],
        check=True, timeout=600,
    )  # fmt: skip
    r = json.loads(out.read_text())
    assert r["settings"]["complete"] and r["settings"]["steps"] == 3
    (run,) = r["runs"]
    assert run["tool"] == "vlgen" and run["gc"] is True and len(run["step_s"]) == 2 and run["peak_rss_mib"] > 100
    assert run["cpu_s_per_step"] > 0 and run["first_step_end_s"] < run["total_s"]
    assert run["lora_tensors"] == 72  # 12 modules x 2 double blocks + q/k/v x 4 single blocks, A and B
    (row,) = r["rows"]
    assert row["s_per_step"] == run["s_per_step"] and row["diffusers_s_per_step"] is None

"""`vlgen tiny NAME OUT`: build a tiny random model of the real classes (thin wrapper over vlgen.testing)."""

import json
from pathlib import Path

import typer

from vlgen.cli import _console
from vlgen.testing import TINY_BUILDERS


def tiny(
    name: str = typer.Argument(..., metavar="NAME", help=f"Which model: {', '.join(TINY_BUILDERS)}."),
    out: Path = typer.Argument(..., metavar="OUT", help="Directory to write (created; replaced only if tiny)."),
    seed: int = typer.Option(0, help="Seed of the random weights; the same seed gives identical files."),
    fit_vae: Path | None = typer.Option(
        None,
        "--fit-vae",
        metavar="DATA_DIR",
        help="sdxl only: fit the VAE as an autoencoder on this folder of images (a dataset's train split, "
        "or every image file) and set its scaling_factor to 1/std of their latents, so generations decode "
        "to images instead of noise. Seeded: the same seed and data give identical files.",
    ),
    vae_steps: int | None = typer.Option(
        None, "--vae-steps", min=1, metavar="N", help="Optimisation steps of --fit-vae (default 1500)."
    ),
) -> None:
    """Build a tiny random model (real classes, toy sizes) that loads like a downloaded checkpoint."""
    from vlgen.errors import VlgenError
    from vlgen.testing import build_tiny

    if vae_steps is not None and fit_vae is None:
        raise VlgenError("--vae-steps only applies with --fit-vae DATA_DIR")
    path = build_tiny(name, out, seed=seed, fit_vae=fit_vae, vae_steps=vae_steps)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    what = "random weights"
    fit = path / "vae_fit.json"
    if fit_vae is not None and fit.is_file():
        s = json.loads(fit.read_text())
        what = (
            f"random weights but the VAE, fitted on {s['images']} images of {fit_vae} in {s['steps']} steps: "
            f"reconstruction MSE {s['reconstruction_mse_before']:.4f} -> {s['reconstruction_mse_after']:.4f}, "
            f"scaling_factor {s['scaling_factor']:.4g}"
        )
    _console.err.print(f"tiny {name} (seed {seed}, {what}, {size / 1e6:.1f} MB) written to {path}")
    _console.out.print(str(path))

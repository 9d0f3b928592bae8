"""`vlgen tiny NAME OUT`: build a tiny random model of the real classes (thin wrapper over vlgen.testing)."""

from pathlib import Path

import typer

from vlgen.cli import _console
from vlgen.testing import TINY_BUILDERS


def tiny(
    name: str = typer.Argument(..., metavar="NAME", help=f"Which model: {', '.join(TINY_BUILDERS)}."),
    out: Path = typer.Argument(..., metavar="OUT", help="Directory to write (created; replaced only if tiny)."),
    seed: int = typer.Option(0, help="Seed of the random weights; the same seed gives identical files."),
) -> None:
    """Build a tiny random model (real classes, toy sizes) that loads like a downloaded checkpoint."""
    from vlgen.testing import build_tiny

    path = build_tiny(name, out, seed=seed)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    _console.err.print(f"tiny {name} (seed {seed}, random weights, {size / 1e6:.1f} MB) written to {path}")
    _console.out.print(str(path))

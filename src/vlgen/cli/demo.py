"""`vlgen demo`: the offline end-to-end job (thin wrapper over vlgen.demo)."""

from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Output folder (report.html and everything behind it)."),
    quick: bool = typer.Option(False, "--quick", help="Smaller data, fewer epochs: every stage in ~2 minutes."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same numbers."),
    train_base: Path | None = typer.Option(
        None,
        "--train-base",
        metavar="OUT",
        help="Instead of the demo: train the demo's text-to-image base (VAE fit, then the whole UNet; seeded, "
        "about 35 min on 2 CPU cores) on the demo's captioning set and write the pipeline to OUT. The committed "
        "base was made with `vlgen demo --train-base src/vlgen/demo/base`.",
    ),
    base_steps: int | None = typer.Option(
        None, "--base-steps", min=1, metavar="N", help="With --train-base: UNet steps (default 3000)."
    ),
) -> None:
    """Run the offline demo: image -> text (train, caption, evaluate) and text -> image (LoRA, generate, evaluate)."""
    from rich.table import Table

    from vlgen.cli._console import err
    from vlgen.cli._console import out as console
    from vlgen.demo import DemoConfig, run_demo

    if base_steps is not None and train_base is None:
        from vlgen.errors import VlgenError

        raise VlgenError("--base-steps only applies with --train-base OUT")
    if train_base is not None:
        from vlgen.demo.base_model import train_demo_base_from_scratch

        overrides = {} if base_steps is None else {"steps": base_steps}
        summary = train_demo_base_from_scratch(train_base, seed=seed, log=err.print, **overrides)
        console.print(f"demo base written to {train_base} ({summary['seconds']['total']:.0f} s)")
        return
    from vlgen.fileio import check_output_dir

    check_output_dir(out, "--out")
    result = run_demo(DemoConfig(out=str(out), quick=quick, seed=seed))
    t = Table(title="vlgen demo: held-out test split")
    t.add_column("metric")
    t.add_column("untrained", justify="right")
    t.add_column("trained", justify="right")
    for k in ("BLEU-4", "CIDEr", "METEOR", "BERTScore"):
        a, b = result.untrained.get(k), result.trained.get(k)
        t.add_row(k, "-" if a is None else f"{a:.4f}", "-" if b is None else f"{b:.4f}")
    console.print(t)
    gram_b, gram_l = (result.images.get(k, {}).get("Gram") for k in ("base", "lora"))
    if gram_b is not None and gram_l is not None:  # style distance to the style set, lower = closer
        verdict = "closer to" if gram_l < gram_b else "NOT closer to"
        console.print(f"text -> image: Gram distance base {gram_b:.3g}, base + LoRA {gram_l:.3g} ({verdict} style)")
    rt = result.roundtrip
    if rt:  # the prompts' colours and shapes recovered by the demo's captioner (vlgen.demo.scoring)
        acc = {k: rt.get(k, {}).get("shape_colour_accuracy") for k in ("floor", "base", "lora", "ceiling")}
        console.print(
            "round trip (shape/colour words recovered): "
            + ", ".join(f"{k} {'-' if v is None else f'{v:.3f}'}" for k, v in acc.items())
        )
    console.print(f"report: {result.report.resolve()}  ({sum(result.timings.values()):.0f} s)")

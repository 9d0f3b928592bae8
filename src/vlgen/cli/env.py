"""`vlgen env`: versions, device, hub status, caches and Java - for bug reports."""

import json

import typer

from vlgen.cli._console import out


def env(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    check_hub: bool = typer.Option(True, help="Probe the hub once (2 s timeout) unless offline mode is on."),
) -> None:
    """Show versions of vlgen and its libraries, the device, hub reachability, caches and Java."""
    from rich.table import Table

    from vlgen.envinfo import collect

    info = collect(check_hub=check_hub)
    if as_json:
        out.print_json(json.dumps(info))
        return
    t = Table(title="vlgen environment", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("vlgen", info["vlgen"])
    t.add_row("python", f"{info['python']} ({info['platform']})")
    for pkg, v in info["versions"].items():
        t.add_row(pkg, v or "[red]not installed[/]")
    dev = info["device"]
    gpus = ", ".join(dev.get("gpus", []))
    t.add_row("device", f"{dev['device']}{' (' + gpus + ')' if gpus else ''}, {dev['cpu_threads']} CPU threads")
    hub = info["hub"]
    state = (
        "offline (HF_HUB_OFFLINE)"
        if hub["offline"]
        else {True: "reachable", False: "unreachable"}.get(hub["reachable"], "not checked")
    )
    t.add_row("hub", f"{hub['endpoint']}: {state}")
    for k, v in info["caches"].items():
        t.add_row(k, v)
    java = info["java"]
    t.add_row("java", java["version"] if java["present"] else "[yellow]missing (METEOR, PTB tokenizer need it)[/]")
    out.print(t)

"""The `vlgen` command line. The only place that reads argv/env; each command is a thin call into the library.

`main(argv)` runs in-process with a list of arguments (tests drive the real CLI this way) and returns the
exit status. User errors (`VlgenError`) print one line to stderr and exit 1 - never a traceback.
"""

from __future__ import annotations

import sys

import typer

from vlgen.cli import caption as _caption
from vlgen.cli import data as _data
from vlgen.cli import demo as _demo
from vlgen.cli import env as _env
from vlgen.cli import evaluate as _evaluate
from vlgen.cli import serve as _serve
from vlgen.cli import t2i as _t2i
from vlgen.cli import tiny as _tiny
from vlgen.cli import train as _train
from vlgen.cli._console import err
from vlgen.errors import VlgenError

app = typer.Typer(
    name="vlgen",
    help="Vision-language generation in both directions: caption, invert prompts, personalise SDXL, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(_data.app, name="data")
app.add_typer(_train.app, name="train")
app.add_typer(_evaluate.app, name="evaluate")
app.command("tiny")(_tiny.tiny)
app.command("env")(_env.env)
app.command("caption")(_caption.caption)
app.command("demo")(_demo.demo)
app.command("autocaption")(_t2i.autocaption)
app.command("generate")(_t2i.generate)
app.command("serve")(_serve.serve)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status instead of calling sys.exit (so tests can call it)."""
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=argv if argv is not None else sys.argv[1:], prog_name="vlgen", standalone_mode=False)
    except typer.Exit as e:  # --help, typer.Exit(code)
        return e.exit_code
    except typer.TyperException as e:  # usage errors: bad option, missing argument, invalid choice
        e.show()
        return e.exit_code
    except typer.Abort:
        err.print("aborted")
        return 130
    except VlgenError as e:
        err.print(f"[bold red]error:[/] {e}", markup=True, highlight=False, soft_wrap=True)
        return e.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    return rv if isinstance(rv, int) else 0

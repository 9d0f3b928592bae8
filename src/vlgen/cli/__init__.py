"""The `vlgen` command line. The only place that reads argv/env; each command is a thin call into the library.

`main(argv)` runs in-process with a list of arguments (tests drive the real CLI this way) and returns the
exit status. User errors (`VlgenError`) print one line to stderr and exit 1 - never a traceback.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import sys

import typer
from rich.markup import escape

from vlgen.cli import caption as _caption
from vlgen.cli import data as _data
from vlgen.cli import demo as _demo
from vlgen.cli import env as _env
from vlgen.cli import evaluate as _evaluate
from vlgen.cli import roundtrip as _roundtrip
from vlgen.cli import serve as _serve
from vlgen.cli import t2i as _t2i
from vlgen.cli import tiny as _tiny
from vlgen.cli import train as _train
from vlgen.cli._console import err
from vlgen.cli._options import plain_help
from vlgen.errors import VlgenError

app = typer.Typer(
    name="vlgen",
    help="Vision-language generation in both directions: caption, invert prompts, personalise SDXL/Flux, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global_options(
    verbose: bool = typer.Option(
        False,
        "--verbose",
        help="Also show what libraries print: their progress bars and warnings known to be harmless.",
    ),
) -> None:
    from vlgen.verbosity import set_verbose

    if verbose or _depth <= 1:  # `vlgen --verbose demo` stays verbose in the commands the demo runs in-process
        set_verbose(verbose)


app.add_typer(_data.app, name="data")
app.add_typer(_train.app, name="train")
app.add_typer(_evaluate.app, name="evaluate")
app.add_typer(_roundtrip.app, name="roundtrip")
app.command("tiny")(_tiny.tiny)
app.command("env")(_env.env)
app.command("caption")(_caption.caption)
app.command("demo")(_demo.demo)
app.command("autocaption")(_t2i.autocaption)
app.command("generate")(_t2i.generate)
app.command("serve")(_serve.serve)


_depth = 0  # how many `main` calls are running: the demo runs its stages through `main` too


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status instead of calling sys.exit (so tests can call it)."""
    global _depth
    _depth += 1
    try:
        return _main(argv)
    finally:
        _depth -= 1


def _main(argv: list[str] | None) -> int:
    command = typer.main.get_command(app)
    plain_help(command)  # --help readable at 80 columns: no option name cut
    try:
        # In a copy of the context: what a command sets there (vlgen.hub.name_model_options) ends with it.
        rv = contextvars.copy_context().run(
            command.main, args=argv if argv is not None else sys.argv[1:], prog_name="vlgen", standalone_mode=False
        )
    except typer.Exit as e:  # --help, typer.Exit(code)
        return e.exit_code
    except typer.TyperException as e:  # usage errors: bad option, missing argument, invalid choice
        e.show()
        return e.exit_code
    except typer.Abort:
        err.print("aborted")
        return 130
    except VlgenError as e:  # escaped: a message naming 'vlgen[quant]' or a path with brackets prints as it is
        err.print(f"[bold red]error:[/] {escape(str(e))}", markup=True, highlight=False, soft_wrap=True)
        return e.exit_code
    except BrokenPipeError:  # `vlgen caption --out - | head`: the reader left; nothing more to say
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - so the exit-time flush does not fail again
        return 141
    except OSError as e:
        line = os_error_line(e)
        if line is None:  # no path involved: a bug, keep the traceback (below)
            return _bug(e)
        err.print(f"[bold red]error:[/] {escape(line)}", markup=True, highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception as e:
        return _bug(e)
    return rv if isinstance(rv, int) else 0


def _bug(e: BaseException) -> int:
    """Not a user error: keep the traceback for the report, and still return a status (main never raises)."""
    import traceback

    traceback.print_exception(e)
    err.print(
        f"error: unexpected {type(e).__name__} (a bug in vlgen); please report it with the lines above and `vlgen env`",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return 1


def os_error_line(e: OSError) -> str | None:
    """One line naming the path and the fix for a filesystem error (an output folder that is a file,
    a read-only folder, a full disk ...), wherever in a command it happened. None without a path."""
    path = e.filename
    if path is None:
        return None
    path = os.fsdecode(path)
    name = os.path.basename(path)
    if name.startswith(".") and name.endswith(".tmp"):  # vlgen.fileio's temp file: the folder is what matters
        path = os.path.dirname(path) or "."
        what = f"cannot write in the folder {path}"
    else:
        what = f"{path}"
    why = e.strerror or str(e)
    fix = {
        errno.EISDIR: "it is a folder where a file is needed; give a file path instead",
        errno.ENOTDIR: "a part of this path is a file where a folder is needed; choose another path",
        errno.EEXIST: "a file is in the way where a folder is needed; remove it or choose another path",
        errno.EACCES: "permission denied; choose a folder you can write to (or fix its permissions)",
        errno.EPERM: "operation not permitted; choose a folder you can write to (or fix its permissions)",
        errno.EROFS: "the file system is read-only; choose a writable location",
        errno.ENOSPC: "no space left on the device; free some space or choose another location",
        errno.ENOENT: "no such file or folder; check the path",
        errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
    }.get(e.errno, f"{why}; check the path")
    return f"{what}: {fix}"

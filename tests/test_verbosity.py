"""`vlgen.verbosity`: third-party progress bars and known-harmless warnings off by default, on with --verbose."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from vlgen import verbosity
from vlgen.cli import main


@pytest.fixture(autouse=True)
def _restore():
    yield
    verbosity.set_verbose(True)  # what libraries do without vlgen, for the tests after these


def test_the_loggers_vlgen_filters_are_the_ones_diffusers_warns_on():
    """HARMLESS_WARNINGS names diffusers' module loggers: fail loudly if diffusers moves the warning."""
    import inspect

    import diffusers.loaders.lora_base as lora_base
    import diffusers.loaders.peft as peft

    for module in (lora_base, peft):
        assert module.logger.name in verbosity.HARMLESS_WARNINGS
        assert "No LoRA keys associated to " in inspect.getsource(module)


@pytest.mark.parametrize("logger_name", sorted(verbosity.HARMLESS_WARNINGS))
def test_harmless_warnings_are_dropped_unless_verbose(logger_name, caplog):
    logger = logging.getLogger(logger_name)
    harmless = verbosity.HARMLESS_WARNINGS[logger_name][0] + " ... (the rest of the library's message)"
    with caplog.at_level(logging.WARNING):
        verbosity.set_verbose(False)
        logger.warning(harmless)
        logger.warning("a warning vlgen knows nothing about")
        verbosity.set_verbose(True)
        logger.warning(harmless)
    assert [r.getMessage() for r in caplog.records] == ["a warning vlgen knows nothing about", harmless]


def test_progress_bars_of_imported_libraries_follow_the_setting():
    import huggingface_hub.utils as hub
    import transformers.utils.logging as tf_logging

    verbosity.set_verbose(False)
    assert hub.are_progress_bars_disabled() and not tf_logging.is_progress_bar_enabled()
    verbosity.set_verbose(True)
    assert not hub.are_progress_bars_disabled() and tf_logging.is_progress_bar_enabled()


def test_libraries_imported_later_are_switched_on_import_and_help_imports_none():
    """set_verbose(False) imports nothing (diffusers alone takes seconds); a library imported afterwards is quiet."""
    code = (
        "import sys\n"
        "from vlgen.verbosity import set_verbose\n"
        "set_verbose(False)\n"
        "heavy = [m for m in ('torch', 'transformers', 'diffusers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import transformers.utils.logging as t, huggingface_hub.utils as h\n"
        "print(t.is_progress_bar_enabled(), h.are_progress_bars_disabled())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


def test_cli_is_quiet_by_default_and_verbose_is_a_global_option(tmp_path, capsys):
    import huggingface_hub.utils as hub

    assert main(["tiny", "dino", str(tmp_path / "a")]) == 0
    assert hub.are_progress_bars_disabled() and not verbosity.is_verbose()
    assert main(["--verbose", "tiny", "dino", str(tmp_path / "b")]) == 0
    assert not hub.are_progress_bars_disabled() and verbosity.is_verbose()
    capsys.readouterr()


def test_verbose_holds_for_commands_run_in_process_by_a_command(tmp_path, monkeypatch, capsys):
    """`vlgen --verbose demo` runs its stages through `main` in-process: they must not switch back to quiet."""
    import vlgen.testing

    real, seen = vlgen.testing.build_tiny, []

    def build_then_nested(name, out, **kw):
        assert main(["data", "--help"]) == 0  # a nested command without --verbose
        seen.append(verbosity.is_verbose())
        return real(name, out, **kw)

    monkeypatch.setattr(vlgen.testing, "build_tiny", build_then_nested)
    assert main(["--verbose", "tiny", "dino", str(tmp_path / "a")]) == 0
    assert main(["tiny", "dino", str(tmp_path / "b")]) == 0
    assert seen == [True, False] and not verbosity.is_verbose()
    capsys.readouterr()


@pytest.mark.parametrize(
    ("module_name", "logger_name"),
    [
        ("bitsandbytes.backends.cpu.ops", "bitsandbytes.backends.cpu.ops"),
        ("diffusers.quantizers.torchao.torchao_quantizer", "diffusers.quantizers.torchao.torchao_quantizer"),
        ("torch.utils._pytree", "torch.utils._pytree"),
    ],
)
def test_the_quant_extras_noise_comes_from_the_loggers_vlgen_filters(module_name, logger_name):
    """The `quant` extra's import-time warnings are filtered by logger name and message prefix: fail loudly when a
    library moves or rewords one (the message would print on every command again)."""
    import importlib
    import inspect

    module = importlib.import_module(module_name)
    source = inspect.getsource(module)
    assert getattr(module, "logger", getattr(module, "log", None)).name == logger_name
    prefix = verbosity.HARMLESS_WARNINGS[logger_name][0]
    assert (prefix if prefix != "<enum '" else "is an Enum subclass and is now natively supported") in source

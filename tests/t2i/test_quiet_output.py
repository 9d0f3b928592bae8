"""What `vlgen generate` prints and writes (issue 14, item 9): no third-party progress bars, escape codes or
"No LoRA keys associated..." warnings unless --verbose; outputs 0644; compare.png labels that tell rows apart."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys

import pytest
from PIL import Image, ImageDraw

from vlgen.cli import main
from vlgen.t2i.grid import common_prefix_words, image_grid, wrap_text

NOISE = ("Loading pipeline components", "Loading weights", "Fetching", "No LoRA keys associated", "it/s]")
PROMPTS = ["a 3D icon in the style of TOK, a red ball", "a 3D icon in the style of TOK, a blue cube on a table"]


def _generate(args: list[str], cwd) -> subprocess.CompletedProcess:
    """`vlgen ...` as a user runs it: a fresh process, stderr a pipe (not a terminal), umask 022."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLGEN_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", "import os, sys; os.umask(0o022); from vlgen.cli import main; sys.exit(main())", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=600,
    )  # fmt: skip


@pytest.mark.parametrize("verbose", [False, True])
def test_generate_in_process_hides_library_noise_unless_verbose(
    verbose, trained, tiny_sdxl_dir, tiny_sdxl_vae_dir, tmp_path, capfd, caplog
):
    """Fast: the real command in-process; stderr at the file-descriptor level, and diffusers' log records."""
    _, lora, *_ = trained
    args = ["--verbose"] if verbose else []
    args += ["generate", PROMPTS[0], "--base", str(tiny_sdxl_dir), "--vae", str(tiny_sdxl_vae_dir), "--lora", str(lora)]
    args += ["--num-inference-steps", "1", "--out", str(tmp_path / "gen")]
    old = os.umask(0o022)
    try:
        with caplog.at_level(logging.WARNING):
            assert main(args) == 0
    finally:
        os.umask(old)
        from vlgen.verbosity import set_verbose

        set_verbose(True)
    err = capfd.readouterr().err
    lora_keys = [r for r in caplog.records if r.getMessage().startswith("No LoRA keys associated")]
    if verbose:
        assert len(lora_keys) == 2  # once per text encoder: the warning this test looks for does happen
        assert "Loading pipeline components" in err
    else:
        assert not lora_keys and not [n for n in NOISE if n in err], err
        assert "\x1b[" not in err and "\r" not in err
        modes = {oct(stat.S_IMODE(p.stat().st_mode)) for p in (tmp_path / "gen").rglob("*") if p.is_file()}
        assert modes == {"0o644"}


@pytest.mark.slow
def test_generate_with_a_lora_is_quiet_and_writes_0644(trained, tiny_sdxl_dir, tiny_sdxl_vae_dir, tmp_path):
    _, lora, *_ = trained
    args = ["generate", *PROMPTS, "--base", str(tiny_sdxl_dir), "--vae", str(tiny_sdxl_vae_dir), "--lora", str(lora)]
    args += ["--compare", "--num-inference-steps", "2", "--out", "gen"]
    proc = _generate(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    noise = [n for n in NOISE if n in proc.stderr]
    assert not noise, f"third-party output on stderr: {noise}\n{proc.stderr}"
    assert "\x1b[" not in proc.stderr and "\r" not in proc.stderr  # no cursor moves or colours in a log
    assert "generated 4 images" in proc.stdout
    files = [p for p in (tmp_path / "gen").rglob("*") if p.is_file()]
    assert len(files) == 7  # 2 x (2 images + metadata.jsonl) + compare.png
    wrong = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(wrong.values()) == {"0o644"}, wrong


@pytest.mark.slow
def test_generate_verbose_shows_what_the_libraries_say(trained, tiny_sdxl_dir, tiny_sdxl_vae_dir, tmp_path):
    _, lora, *_ = trained
    args = ["--verbose", "generate", PROMPTS[0], "--base", str(tiny_sdxl_dir), "--vae", str(tiny_sdxl_vae_dir)]
    args += ["--lora", str(lora), "--num-inference-steps", "2", "--out", "gen"]
    proc = _generate(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "No LoRA keys associated to CLIPTextModel" in proc.stderr and "Loading pipeline components" in proc.stderr


def test_compare_grid_labels_show_the_part_of_each_prompt_that_differs(
    trained, tiny_sdxl_dir, tiny_sdxl_vae_dir, tmp_path, monkeypatch
):
    import vlgen.t2i.grid

    seen = {}

    def spy(rows, **kw):
        seen.update(kw)
        return image_grid(rows, **kw)

    monkeypatch.setattr(vlgen.t2i.grid, "image_grid", spy)
    _, lora, *_ = trained
    args = ["generate", *PROMPTS, "--base", str(tiny_sdxl_dir), "--vae", str(tiny_sdxl_vae_dir), "--lora", str(lora)]
    args += ["--compare", "--num-inference-steps", "1", "--out", str(tmp_path / "gen")]
    assert main(args) == 0
    assert seen["title"] == "a 3D icon in the style of TOK, \u2026"
    assert seen["row_labels"] == ["seed 0: \u2026a red ball", "seed 1: \u2026a blue cube on a table"]
    grid = Image.open(tmp_path / "gen" / "compare.png")
    assert grid.height > 2 * 64  # a title band above the column labels


def test_wrap_text_keeps_every_word_that_fits_and_marks_a_cut():
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text = "seed 1: \u2026a blue cube on a table with a very long description of everything around it"
    lines = wrap_text(draw, text, 160, max_lines=10)
    assert " ".join(lines) == text and all(draw.textlength(line) <= 160 for line in lines)
    short = wrap_text(draw, text, 160, max_lines=2)
    assert len(short) == 2 and short[0] == lines[0] and short[1].endswith("\u2026")
    assert draw.textlength(short[1]) <= 160
    assert wrap_text(draw, "x" * 200, 50, 3)[0].endswith("\u2026")  # one word wider than the column


def test_common_prefix_words_ends_at_a_clause():
    assert common_prefix_words(PROMPTS) == "a 3D icon in the style of TOK, "
    assert common_prefix_words(["a cat", "a dog"]) == "a "
    assert common_prefix_words(["same", "same"]) == "" and common_prefix_words(["one"]) == ""
    assert common_prefix_words(["a b", "a b c"]) == "a "  # every row keeps a word of its own

"""`vlgen roundtrip prompts|images` on tiny models (tiny SDXL at 64 px, tiny CNN-LSTM and BLIP captioners,
tiny CLIP/DINO/VGG), driven through the real CLI in-process.

One uninterrupted prompts run is shared (module fixture); the other tests compare against it: a run killed
after its first batch and resumed must equal it, a rerun must redo nothing and give the same numbers.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from vlgen.cli import main
from vlgen.roundtrip import CAPTION_METRIC_KEYS, PAIRED_IMAGE_KEYS, PROMPT_IMAGE_KEYS
from vlgen.testing.vgg import build_tiny_vgg

PROMPTS = [
    "a small green triangle above a large yellow circle",
    "a red square",
    "a blue circle left of a red star",
    "two purple squares",
    "a yellow triangle",
]
STEPS = ["--num-inference-steps", "2", "--batch-size", "2", "--num-beams", "2", "--max-new-tokens", "8"]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLGEN_PROGRESS", "0")


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("\n".join(PROMPTS[:2]) + "\n\n" + "\n".join(PROMPTS[2:]) + "\n")  # a blank line is no prompt
    return path


def _prompts_argv(prompts_file, out, sdxl, captioners, clip):
    argv = ["roundtrip", "prompts", str(prompts_file), "--base", str(sdxl), "--out", str(out), *STEPS]
    for c in captioners:
        argv += ["--captioner", str(c)]
    return [*argv, "--clip-model", str(clip), "--json"]


def _run(argv, capsys) -> tuple[int, str, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.fixture(scope="module")
def first(tmp_path_factory, prompts_file, tiny_sdxl_dir, tiny_cnn_lstm_dir, tiny_blip_dir, tiny_clip_dir):
    """One uninterrupted two-captioner prompts run: (argv, out dir, stdout JSON)."""
    import io
    from contextlib import redirect_stdout

    out = tmp_path_factory.mktemp("rt") / "first"
    argv = _prompts_argv(prompts_file, out, tiny_sdxl_dir, [tiny_cnn_lstm_dir, tiny_blip_dir], tiny_clip_dir)
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("VLGEN_PROGRESS", "0")
    buf = io.StringIO()
    try:
        with redirect_stdout(buf):
            assert main(argv) == 0
    finally:
        mp.undo()
    return argv, out, json.loads(buf.getvalue())


def _metadata(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]


def test_prompts_outputs(first, tiny_cnn_lstm_dir, tiny_blip_dir, capsys):
    argv, out, printed = first
    metrics = json.loads((out / "metrics.json").read_text())
    assert printed == metrics
    assert list(metrics) == ["direction", "n", "captioners", "settings"]
    assert metrics["direction"] == "prompts" and metrics["n"] == len(PROMPTS)
    names = [str(tiny_cnn_lstm_dir), str(tiny_blip_dir)]
    assert list(metrics["captioners"]) == names  # as given on the command line
    for name in names:
        scores = metrics["captioners"][name]
        assert list(scores) == [*CAPTION_METRIC_KEYS, *PROMPT_IMAGE_KEYS]
        assert all(isinstance(v, float) and math.isfinite(v) for v in scores.values()), scores
    assert metrics["captioners"][names[0]]["CLIP-T"] == metrics["captioners"][names[1]]["CLIP-T"]
    assert metrics["settings"]["unavailable"] == {}
    assert metrics["settings"]["captioning"]["captioners"] == {names[0]: {"family": "cnn-lstm"},
                                                               names[1]: {"family": "blip"}}  # fmt: skip

    rows = _metadata(out)
    assert [r["prompt"] for r in rows] == PROMPTS
    assert [r["seed"] for r in rows] == [0, 1, 2, 3, 4]
    assert len({r["file_name"] for r in rows}) == len(rows)
    for r in rows:
        assert {"file_name", "prompt", "seed", "captions"} <= set(r)
        assert list(r["captions"]) == names and all(isinstance(c, str) for c in r["captions"].values())
        assert (out / r["file_name"]).is_file()
    page = (out / "report.html").read_text()
    assert PROMPTS[0] in page and rows[0]["captions"][names[1]] in page and 'src="0000.png"' in page
    assert (out / "config.yaml").is_file()

    rc, stdout, _ = _run(["data", "validate", str(out)], capsys)
    assert rc == 0, stdout


def test_loads_as_imagefolder(first):
    datasets = pytest.importorskip("datasets")
    _, out, _ = first
    ds = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    assert len(ds) == len(PROMPTS) and ds[0]["prompt"] == PROMPTS[0]


def test_rerun_redoes_nothing_and_gives_the_same_numbers(first, capsys, monkeypatch):
    from vlgen.t2i import generate as t2i

    argv, out, printed = first
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    monkeypatch.setattr(t2i, "load_pipeline", lambda *a, **k: pytest.fail("a finished run loaded the pipeline"))
    rc, stdout, err = _run(argv, capsys)
    assert rc == 0, err
    assert json.loads(stdout) == printed
    assert "generated 0 and captioned 0 images" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == mtimes


def test_killed_run_resumes_to_the_uninterrupted_result(first, tmp_path, capsys, monkeypatch):
    """Killed (an exception) after its first batch of 2 images, rerun: the 2 are not regenerated, and every
    output equals the uninterrupted run's (so two runs also give the same numbers)."""
    from vlgen.t2i import generate as t2i

    argv, first_out, printed = first
    out = tmp_path / "resumed"
    argv = [out.as_posix() if a == first_out.as_posix() else a for a in argv]
    real = t2i.generate_images
    calls: list[list[str]] = []

    def dies_after_one_batch(pipe, prompts, **kw):
        if calls:
            raise KeyboardInterrupt  # what Ctrl-C or a kill leaves: the first batch on disk, nothing after
        calls.append(list(prompts))
        return real(pipe, prompts, **kw)

    monkeypatch.setattr(t2i, "generate_images", dies_after_one_batch)
    assert main(argv) == 130
    capsys.readouterr()
    assert sorted(p.name for p in out.glob("*.png")) == ["0000.png", "0001.png"]
    assert not (out / "metadata.jsonl").exists()
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}

    def counting(pipe, prompts, **kw):
        calls.append(list(prompts))
        return real(pipe, prompts, **kw)

    calls.clear()
    monkeypatch.setattr(t2i, "generate_images", counting)
    rc, stdout, err = _run(argv, capsys)
    assert rc == 0, err
    assert calls == [PROMPTS[2:4], PROMPTS[4:]]  # only the unfinished batches
    assert {n: (out / n).stat().st_mtime_ns for n in kept} == kept
    assert json.loads(stdout) == printed
    assert _metadata(out) == _metadata(first_out)
    for p in first_out.glob("*.png"):
        assert (out / p.name).read_bytes() == p.read_bytes(), p.name


def test_rerun_with_other_settings_is_refused(first, capsys):
    argv, out, _ = first
    rc, _, err = _run([*argv, "--seed", "7"], capsys)
    assert rc == 1
    assert "holds a round trip with other inputs or settings" in err and "seed: 0 now 7" in err
    assert len(err.strip().splitlines()) == 1


def test_same_captioner_twice_is_refused(tmp_path, prompts_file, tiny_sdxl_dir, tiny_cnn_lstm_dir, capsys):
    twice = [tiny_cnn_lstm_dir, f"{tiny_cnn_lstm_dir}/"]
    rc, _, err = _run(_prompts_argv(prompts_file, tmp_path / "o", tiny_sdxl_dir, twice, "unused"), capsys)
    assert rc == 1 and "is given twice" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_bad_prompts_line_is_named(tmp_path, tiny_sdxl_dir, tiny_cnn_lstm_dir, capsys):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "a red square"}\n{"text": "no prompt key"}\n')
    rc, _, err = _run(_prompts_argv(bad, tmp_path / "o", tiny_sdxl_dir, [tiny_cnn_lstm_dir], "unused"), capsys)
    assert rc == 1 and f"{bad}:2: missing 'prompt'" in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory):
    from vlgen.data.synth import synth_dataset

    out = tmp_path_factory.mktemp("src") / "data"
    synth_dataset(out, n=3, seed=0, image_size=64, progress=False)
    return out


def test_images_direction_is_paired(
    images_dir, tmp_path, tiny_sdxl_dir, tiny_cnn_lstm_dir, tiny_blip_dir, tiny_clip_dir, tiny_dino_dir, capsys
):
    from vlgen.data import load_image
    from vlgen.metrics.image import clip_image_embeddings, compute_image_metrics, load_clip

    vgg = build_tiny_vgg(tmp_path / "vgg", seed=0)
    out = tmp_path / "out"
    caps = [str(tiny_cnn_lstm_dir), str(tiny_blip_dir)]
    argv = ["roundtrip", "images", str(images_dir), "--base", str(tiny_sdxl_dir), "--out", str(out), *STEPS,
            "--captioner", caps[0], "--captioner", caps[1], "--template", "TOK, {caption}", "--clip-model",
            str(tiny_clip_dir), "--dino-model", str(tiny_dino_dir), "--vgg-weights", str(vgg), "--json"]  # fmt: skip
    rc, stdout, err = _run(argv, capsys)
    assert rc == 0, err
    metrics = json.loads(stdout)
    assert list(metrics) == ["direction", "n", "captioners", "settings"]
    assert metrics["direction"] == "images" and metrics["n"] == 3
    assert "paired" in metrics["settings"]["pairing"]
    for c in caps:
        assert list(metrics["captioners"][c]) == list(PAIRED_IMAGE_KEYS)
        assert all(isinstance(v, float) for v in metrics["captioners"][c].values())

    rows = _metadata(out)
    assert len(rows) == 6 and len({r["file_name"] for r in rows}) == 6
    sources = sorted(json.loads(line)["file_name"] for line in (images_dir / "metadata.jsonl").read_text().splitlines())
    for c in caps:
        mine = [r for r in rows if r["captioner"] == c]
        assert sorted(r["source_file_name"] for r in mine) == sources
        for r in mine:
            assert {"file_name", "source_file_name", "captioner", "caption", "seed"} <= set(r)
            assert r["prompt"] == f"TOK, {r['caption']}"
    by_source = {}
    for r in rows:  # one seed per image, the same for every captioner
        by_source.setdefault(r["source_file_name"], set()).add(r["seed"])
    assert all(len(s) == 1 for s in by_source.values()) and len({next(iter(s)) for s in by_source.values()}) == 3

    # CLIP-I is the mean over pairs (regeneration i, its own original i), not over all pairs.
    clip = load_clip(str(tiny_clip_dir))
    mine = [r for r in rows if r["captioner"] == caps[0]]
    gen = [load_image(out / r["file_name"]) for r in mine]
    orig = [load_image(images_dir / r["source_file_name"]) for r in mine]
    cos = torch.nn.functional.cosine_similarity(
        clip_image_embeddings(clip, gen).double(), clip_image_embeddings(clip, orig).double(), dim=-1
    )
    assert metrics["captioners"][caps[0]]["CLIP-I"] == pytest.approx(float(cos.mean()), abs=1e-9)
    all_pairs = compute_image_metrics(gen, None, orig, metrics=["CLIP-I"], clip_model=str(tiny_clip_dir))
    assert metrics["captioners"][caps[0]]["CLIP-I"] != pytest.approx(all_pairs.corpus["CLIP-I"], abs=1e-6)

    rc, stdout, _ = _run(["data", "validate", str(out)], capsys)
    assert rc == 0, stdout


def test_missing_default_model_is_null_with_a_reason(images_dir, tmp_path, tiny_sdxl_dir, tiny_cnn_lstm_dir, capsys):
    """Without --dino-model/--clip-model/--vgg-weights the defaults are tried; offline they are null + reason."""
    argv = ["roundtrip", "images", str(images_dir), "--base", str(tiny_sdxl_dir), "--out", str(tmp_path / "o"),
            *STEPS, "--captioner", str(tiny_cnn_lstm_dir), "--json"]  # fmt: skip
    rc, stdout, err = _run(argv, capsys)
    assert rc == 0, err
    metrics = json.loads(stdout)
    unavailable = metrics["settings"]["unavailable"]
    for key in ("CLIP-I", "DINO"):
        assert metrics["captioners"][str(tiny_cnn_lstm_dir)][key] is None
        assert "--clip-model" in unavailable[key] or "--dino-model" in unavailable[key]


def test_python_api_returns_the_rows_the_demo_scores(first, tiny_sdxl_dir, tiny_cnn_lstm_dir, tiny_blip_dir):
    """`roundtrip_prompts` with the config the CLI built: resumes the CLI's run (nothing redone) and returns
    the metadata rows (prompt + captions by captioner) and the metrics object."""
    from vlgen.roundtrip import RoundtripConfig, roundtrip_prompts

    _, out, printed = first
    clip = printed["settings"]["metrics"]["CLIP-T"]["model"]
    cfg = RoundtripConfig(captioners=[str(tiny_cnn_lstm_dir), str(tiny_blip_dir)], generation_batch_size=2,
                          num_beams=2, max_new_tokens=8, clip_model=clip)  # fmt: skip
    cfg.generation.base, cfg.generation.num_inference_steps = str(tiny_sdxl_dir), 2
    res = roundtrip_prompts(PROMPTS, out, cfg)
    assert (res.generated, res.captioned) == (0, 0)
    assert res.rows == _metadata(out)
    assert res.metrics["captioners"] == printed["captioners"]
    assert [(r["prompt"], list(r["captions"])) for r in res.rows] == [(p, cfg.captioners) for p in PROMPTS]


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_uninterrupted_result(
    tmp_path, prompts_file, tiny_sdxl_dir, tiny_cnn_lstm_dir, tiny_clip_dir, capsys, monkeypatch
):
    """A real kill (SIGKILL of a `vlgen roundtrip prompts` process once 2 images are journaled), then a rerun:
    only the rest is generated, and every output equals an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from vlgen.t2i import generate as t2i

    def argv(out):
        a = _prompts_argv(prompts_file, out, tiny_sdxl_dir, [tiny_cnn_lstm_dir], tiny_clip_dir)
        return [x if x != "2" or a[i - 1] != "--batch-size" else "1" for i, x in enumerate(a)]  # one image a batch

    killed = tmp_path / "killed"
    journal = killed / "journal" / "generated.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLGEN_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "vlgen", *argv(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if journal.is_file() and journal.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = [json.loads(line)["file_name"] for line in journal.read_text().splitlines() if line.endswith("}")]
    assert 2 <= len(done) < len(PROMPTS) and not (killed / "metadata.jsonl").exists()
    kept = {n: (killed / n).stat().st_mtime_ns for n in done}

    real, calls = t2i.generate_images, []
    monkeypatch.setattr(
        t2i, "generate_images", lambda pipe, prompts, **kw: calls.append(prompts) or real(pipe, prompts, **kw)
    )
    rc, stdout, err = _run(argv(killed), capsys)
    assert rc == 0, err
    assert len(calls) == len(PROMPTS) - len(done)
    assert {n: (killed / n).stat().st_mtime_ns for n in kept} == kept

    monkeypatch.setattr(t2i, "generate_images", real)
    rc, stdout_ref, err = _run(argv(tmp_path / "uninterrupted"), capsys)
    assert rc == 0, err
    assert json.loads(stdout) == json.loads(stdout_ref)
    assert _metadata(killed) == _metadata(tmp_path / "uninterrupted")
    for p in (tmp_path / "uninterrupted").glob("*.png"):
        assert (killed / p.name).read_bytes() == p.read_bytes(), p.name


def test_a_model_changed_in_place_is_not_resumed(tmp_path):
    """Same command, but the base's weights were rewritten at the same path: the journal is not reused."""
    from vlgen.errors import ConfigError
    from vlgen.roundtrip import RoundtripConfig
    from vlgen.roundtrip.run import _fingerprint, open_journal

    base = tmp_path / "base"
    (base / "unet").mkdir(parents=True)
    weights = base / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"1")
    cfg = RoundtripConfig(captioners=["cnn-lstm"])
    cfg.generation.base = str(base)
    out = tmp_path / "out"
    open_journal(out, _fingerprint("prompts", PROMPTS, cfg))
    open_journal(out, _fingerprint("prompts", PROMPTS, cfg))  # unchanged: resumes
    weights.write_bytes(b"22")
    with pytest.raises(ConfigError, match=f"the files of {base} changed"):
        open_journal(out, _fingerprint("prompts", PROMPTS, cfg))

"""`vlgen caption` on several processes: every image exactly once, the same output as one process.

The multi-process runs are real: `torchrun --nproc_per_node 2 -m vlgen caption ...` on CPU (gloo), as a user
would start it. Journals, merge and resume rules: vlgen.captioning.batch.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vlgen.captioning.batch import caption_images, collect_inputs, find_journals, journal_path
from vlgen.captioning.registry import load_captioner
from vlgen.data.synth import synth_dataset
from vlgen.errors import VlgenError

TORCHRUN = Path(sys.executable).parent / "torchrun"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "data"
    synth_dataset(out, n=20, seed=0, image_size=32)
    return out


@pytest.fixture(scope="module")
def reference(synth, tiny_cnn_lstm_dir, tmp_path_factory):
    """The output of one uninterrupted 1-process run (the bytes every other run must reproduce)."""
    out = tmp_path_factory.mktemp("ref") / "caps.jsonl"
    caption_images(load_captioner(tiny_cnn_lstm_dir), collect_inputs([synth]), out, batch_size=4, num_beams=2)
    return out.read_bytes()


class CountingCaptioner:
    """Wraps a real captioner and records how many images it captioned."""

    def __init__(self, inner):
        self.inner, self.images = inner, 0

    def generate(self, images, **kw):
        self.images += len(images)
        return self.inner.generate(images, **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, cwd, nproc=2, env=None, timeout=240):
    """`torchrun --nproc_per_node N -m vlgen caption ARGS` on CPU; returns the CompletedProcess."""
    cmd = [str(TORCHRUN), "--nproc_per_node", str(nproc), "--master-addr", "127.0.0.1"]
    cmd += ["--master-port", str(_free_port()), "-m", "vlgen", "caption", *map(str, args)]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def _captioned(stderr: str) -> int:
    """Images captioned in a run, summed over its processes' final lines."""
    return sum(int(n) for n in re.findall(r"captioned (\d+) images", stderr))


def _names(path: Path) -> list[str]:
    return [json.loads(x)["file_name"] for x in path.read_text().splitlines()]


def test_two_processes_caption_each_image_once_and_match_one_process(synth, tiny_cnn_lstm_dir, reference, tmp_path):
    """Fast tier. Rows already in --out count as done; the 2-process output equals the 1-process one."""
    items = collect_inputs([synth])
    out = tmp_path / "caps.jsonl"
    caption_images(load_captioner(tiny_cnn_lstm_dir), items[:5], out, batch_size=4, num_beams=2)
    args = [synth, "--model", tiny_cnn_lstm_dir, "--out", out, "--batch-size", 4, "--num-beams", 2]
    r = _torchrun(args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "process 0/2" in r.stderr and "process 1/2" in r.stderr  # both saw the launch (not 2 x 1 process)
    assert _captioned(r.stderr) == len(items) - 5  # each image once, split across the two
    assert out.read_bytes() == reference
    assert find_journals(out) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["caps.jsonl"]


def test_one_process_honours_and_merges_journals_a_killed_run_left(synth, tiny_cnn_lstm_dir, reference, tmp_path):
    items = collect_inputs([synth])
    cap = load_captioner(tiny_cnn_lstm_dir)
    out = tmp_path / "caps.jsonl"
    ref_rows = [json.loads(x) for x in reference.splitlines()]
    # What a killed 3-process run leaves: rank 0 was killed in its first write, rank 1 wrote two rows and half a
    # third, rank 2 one row; nothing in --out yet.
    rank0, rank1, rank2 = (journal_path(out, r, 3) for r in range(3))
    rank0.write_text('{"file_na')
    rank1.write_text(json.dumps(ref_rows[1]) + "\n" + json.dumps(ref_rows[4]) + '\n{"file_name": "00')
    rank2.write_text(json.dumps(ref_rows[2]) + "\n")
    assert find_journals(out) == [rank0, rank1, rank2]
    counting = CountingCaptioner(cap)
    s = caption_images(counting, items, out, batch_size=4, num_beams=2)
    assert counting.images == s.captioned == len(items) - 3 and s.already_done == 3
    assert out.read_bytes() == reference  # merged in the list's order
    assert find_journals(out) == []


def test_several_processes_refuse_stdout_and_devices():
    with pytest.raises(VlgenError, match="2 processes need a regular output file"):
        caption_images(None, [], None, num_processes=2, barrier=lambda: None)
    with pytest.raises(VlgenError, match="--out /dev/null: 2 processes"):
        caption_images(None, [], Path("/dev/null"), num_processes=2, barrier=lambda: None)


@pytest.mark.slow
@pytest.mark.parametrize("rerun_processes", [1, 2])
def test_killed_two_process_run_reruns_with_any_process_count(
    synth, tiny_cnn_lstm_dir, reference, tmp_path, rerun_processes
):
    items = collect_inputs([synth])
    out = tmp_path / "caps.jsonl"
    args = [synth, "--model", tiny_cnn_lstm_dir, "--out", out, "--batch-size", 2, "--num-beams", 2]
    killed = _torchrun(args, cwd=tmp_path, env={"VLGEN_TEST_CAPTION_KILL_AFTER_ROWS": "3"})
    assert killed.returncode != 0
    journals = find_journals(out)
    assert journals and not out.exists()
    journaled = sum(1 for j in journals for line in j.read_text().splitlines() if line.endswith("}"))
    assert 3 <= journaled < len(items)
    if rerun_processes == 1:
        counting = CountingCaptioner(load_captioner(tiny_cnn_lstm_dir))
        s = caption_images(counting, items, out, batch_size=4, num_beams=2)
        captioned = counting.images
        assert s.out_rows == len(items)
    else:
        r = _torchrun(args, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        captioned = _captioned(r.stderr)
    assert captioned == len(items) - journaled  # nothing captioned twice
    assert out.read_bytes() == reference
    assert find_journals(out) == []


@pytest.mark.slow
def test_two_processes_refuse_stdout_in_one_line(synth, tiny_cnn_lstm_dir, tmp_path):
    r = _torchrun([synth, "--model", tiny_cnn_lstm_dir, "--out", "-"], cwd=tmp_path)
    assert r.returncode != 0
    # One line per process from vlgen (torchrun adds its own report of the failed workers after them).
    assert r.stderr.count("2 processes cannot share stdout") == 2 and "vlgen/cli" not in r.stderr
    assert r.stdout == ""


def test_module_entry_point_runs(tmp_path):
    """`python -m vlgen` is what torchrun and `accelerate launch -m vlgen` start."""
    r = subprocess.run([sys.executable, "-m", "vlgen", "caption", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--out" in r.stdout


def test_journal_names_are_found_only_for_their_output(tmp_path):
    out = tmp_path / "caps.jsonl"
    for name in ["caps.rank0-of-2.jsonl", "caps.rank1-of-2.skipped.jsonl", "capsx.rank0-of-2.jsonl", "other.jsonl"]:
        (tmp_path / name).write_text("")
    assert find_journals(out) == [tmp_path / "caps.rank0-of-2.jsonl"]
    shutil.rmtree(tmp_path)


@pytest.fixture(scope="module")
def shards(synth, tmp_path_factory):
    """The synth images as two WebDataset shards (`00000.tar`, `00001.tar`; key = the file's stem)."""
    import tarfile

    root = tmp_path_factory.mktemp("shards")
    names = sorted(p.name for p in synth.glob("*.png"))
    for s, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        with tarfile.open(root / f"{s:05d}.tar", "w") as tf:
            for name in part:
                tf.add(synth / name, arcname=name)
    return root


@pytest.fixture(scope="module")
def shard_reference(shards, tiny_cnn_lstm_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("shard-ref") / "caps.jsonl"
    caption_images(load_captioner(tiny_cnn_lstm_dir), collect_inputs([shards]), out, batch_size=2, num_beams=2)
    return out.read_bytes()


def test_two_processes_over_shards_write_the_one_process_output_and_parquet(
    shards, tiny_cnn_lstm_dir, shard_reference, tmp_path
):
    """Ranks take every N-th sample of the shards' full list; rank 0 merges and writes OUT.parquet."""
    import pyarrow.parquet as pq

    out = tmp_path / "caps.parquet"
    args = [f"{shards}/{{00000..00001}}.tar", "--model", tiny_cnn_lstm_dir, "--out", out, "--batch-size", 2]
    r = _torchrun([*args, "--num-beams", 2], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _captioned(r.stderr) == len(collect_inputs([shards]))
    journal = tmp_path / "caps.jsonl"
    assert journal.read_bytes() == shard_reference
    assert pq.read_table(out).to_pylist() == [json.loads(x) for x in shard_reference.splitlines()]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["caps.jsonl", "caps.parquet"]


@pytest.mark.slow
@pytest.mark.parametrize("rerun_processes", [1, 2])
def test_killed_two_process_run_over_shards_reruns_with_any_process_count(
    shards, tiny_cnn_lstm_dir, shard_reference, tmp_path, rerun_processes
):
    out = tmp_path / "caps.jsonl"
    args = [shards, "--model", tiny_cnn_lstm_dir, "--out", out, "--batch-size", 2, "--num-beams", 2]
    killed = _torchrun(args, cwd=tmp_path, env={"VLGEN_TEST_CAPTION_KILL_AFTER_ROWS": "3"})
    assert killed.returncode != 0
    journals = find_journals(out)
    journaled = sum(1 for j in journals for line in j.read_text().splitlines() if line.endswith("}"))
    n = len(collect_inputs([shards]))
    assert journals and 3 <= journaled < n
    r = _torchrun(args, cwd=tmp_path, nproc=rerun_processes)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _captioned(r.stderr) == n - journaled  # nothing captioned twice
    assert out.read_bytes() == shard_reference and find_journals(out) == []

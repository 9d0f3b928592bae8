"""benchmarks/bench_caption_scale.py (issue 19 item 4): its synthetic inputs are what vlgen reads them as.

The benchmark itself (minutes of `vlgen caption` runs) is never run here; these check that its folder, shards
and 1M-line-style output are the inputs it claims (N samples, unique keys, an output vlgen resumes from) and
that the script's options parse.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_caption_scale
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return bench_caption_scale


def test_inputs_are_read_by_vlgen_as_n_samples(tmp_path):
    from vlgen.captioning.batch import collect_inputs, done_file_names
    from vlgen.data.shards import ShardSample

    bench = _bench()
    images = bench.encoded_images(3)
    assert len(set(images)) == 3 and all(b[:2] == b"\xff\xd8" for b in images)  # distinct JPEGs
    n = 2 * bench.PER_DIR + 5  # three subfolders / shards, the last one short
    folder = collect_inputs([bench.write_folder(tmp_path / "folder", n, images)])
    assert len(folder) == n
    assert folder[1234][0] == "00001/0001234.jpg" and folder[1234][1].read_bytes() == images[1234 % 3]
    shards = collect_inputs([bench.write_shards(tmp_path / "shards", n, images)])
    assert [k for k, _ in shards] == [bench.key(i) for i in range(n)]
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["00000.tar", "00001.tar", "00002.tar"]
    ref = shards[n - 1][1]
    assert isinstance(ref, ShardSample) and ref.read_bytes() == images[(n - 1) % 3]

    out = tmp_path / "captions.jsonl"
    assert bench.write_caption_file(out, 50) == out.stat().st_size
    done = done_file_names(out)  # a valid `vlgen caption` output holding the first 50 shard keys
    assert done == {k for k, _ in shards[:50]}


def test_help_lists_the_options():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_caption_scale.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for option in ("--sizes", "--formats", "--workers", "--threads", "--resume-lines", "--work", "--out"):
        assert option in proc.stdout

"""benchmarks/_caption_bench.py: what the captioning benchmarks share (their timer, inputs and table rows), tested
once here; each benchmark's own tests run it on its tiny model."""

from __future__ import annotations

import pytest
from PIL import Image

from benchmark_scripts import import_benchmark


def _cb():
    return import_benchmark("_caption_bench")


def test_alternate_rotates_the_order_and_records_every_method(capsys):
    cb = _cb()
    calls: list[str] = []
    methods = {"a": lambda: calls.append("a") or ["x"], "b": lambda: calls.append("b"), "c": lambda: calls.append("c")}
    seen: list[tuple[int, int]] = []

    def after_repeat(t, done: int) -> None:
        seen.append((done, len(t.times["a"])))

    t = cb.alternate(methods, {"a": 4, "b": 2, "c": 1}, 3, lambda: 100.0, after_repeat)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # rotated by one per repeat
    assert seen == [(1, 1), (2, 2), (3, 3)]  # called after each repeat, with the times so far
    assert len(t.rates) == 3 * (1 + 3)  # per repeat: before its first method and after every method
    assert len(t.load) == 1 + 3 * 3  # at the start and after every method
    assert all(len(v) == 3 for v in t.times.values()) and all(len(v) == 3 for v in t.usage.values())
    assert set(t.usage["a"][0]) == {"user_s", "sys_s", "minflt"}
    assert t.captions() == {"a": ["x"]}  # only list outputs are captions
    assert capsys.readouterr().out.count("s/image\n") == 3  # one progress line per repeat


def test_summary_pieces():
    cb = _cb()
    times = {"pipeline": [2.0, 3.0], "vlgen_caption": [1.0, 2.0]}
    assert cb.per_repeat_ratio(times, "pipeline", "vlgen_caption") == [2.0, 1.5]
    assert cb.medians(times) == {"pipeline": 2.5, "vlgen_caption": 1.5}
    usage = {"m": [{"user_s": 1.0, "sys_s": 0.5, "minflt": 3}, {"user_s": 2.0, "sys_s": 0.5, "minflt": 3}]}
    assert cb.cpu_medians(usage) == {"m": pytest.approx(2.0)}
    assert cb.load_summary([1.0, 3.0, 2.0]) == {"min": 1.0, "median": 2.0, "max": 3.0}
    assert cb.fixed_kwargs(7, 3) == {"max_new_tokens": 7, "min_new_tokens": 7, "do_sample": False, "num_beams": 3}


def test_write_images_are_random_rgb_pngs_of_the_size_asked(tmp_path):
    paths = _cb().write_images(tmp_path, 3, 0, (160, 120))
    assert [p.name for p in paths] == ["img_000.png", "img_001.png", "img_002.png"]
    with Image.open(paths[0]) as im:
        assert im.size == (160, 120) and im.mode == "RGB"


@pytest.mark.parametrize("with_cpu", [False, True])
def test_table_rows_line_up(capsys, with_cpu):
    med = {"vlgen_caption": 0.1, "pipeline": 0.25}
    cpu = {k: 2 * v for k, v in med.items()} if with_cpu else None
    _cb().print_rows(med, {"vlgen_caption": "fast", "pipeline": "slow"}, 0.05, "floor note", cpu=cpu, width=18)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("method") and lines[0].endswith("  note")
    assert lines[1] == "vlgen_caption         0.100    10.000" + ("      0.200" if with_cpu else "") + "  fast"
    assert lines[3] == "encoder floor         0.050    20.000" + (" " * 11 if with_cpu else "") + "  floor note"

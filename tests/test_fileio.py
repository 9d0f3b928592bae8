import json

from vlgen.fileio import JsonlAppender, atomic_write_text, write_json


def test_atomic_write_leaves_no_temp_files(tmp_path):
    p = atomic_write_text(tmp_path / "a" / "b.txt", "héllo")
    assert p.read_text(encoding="utf-8") == "héllo"
    write_json(tmp_path / "a" / "c.json", {"x": 1})
    assert sorted(f.name for f in (tmp_path / "a").iterdir()) == ["b.txt", "c.json"]


def test_appender_drops_a_partial_last_line_from_a_killed_run(tmp_path):
    p = tmp_path / "out.jsonl"
    p.write_text('{"file_name": "a.png"}\n{"file_na')  # killed mid-write
    with JsonlAppender(p) as w:
        w.write({"file_name": "b.png"})
    rows = [json.loads(line) for line in p.read_text().splitlines()]
    assert rows == [{"file_name": "a.png"}, {"file_name": "b.png"}]

"""`vlgen evaluate captions|compare` driven in-process through `vlgen.cli.main`."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from PIL import Image

from vlgen.cli import main

# CLIPScore/RefCLIPScore are None unless --clip-model (issue #18 item 4)
KEYS = ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE", "sacreBLEU", "ROUGE-1",
        "ROUGE-2", "BERTScore", "combined", "prompt_similarity", "CLIPScore", "RefCLIPScore", "n",
        "settings"]  # fmt: skip
ROWS = [
    {
        "id": "1",
        "prediction": "a man riding a wave on a surfboard",
        "references": ["A man riding a wave on top of a surfboard.", "A surfer rides a large wave."],
    },
    {"id": "2", "prediction": "", "references": ["A cat is lying on a laptop keyboard."]},
    {
        "id": "3",
        "prediction": "two dogs playing with a frisbee",
        "references": ["Two dogs chase a frisbee on the lawn.", "A pair of dogs playing with a red frisbee."],
    },
]
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap needs Java")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLGEN_PROGRESS", "0")


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@needs_java
def test_json_has_exactly_the_contract_keys(tmp_path, capsys):
    pred = _write(tmp_path / "pred.jsonl", ROWS)
    assert main(["evaluate", "captions", str(pred), "--json", "--bertscore-model", "minilm"]) == 0
    obj = json.loads(capsys.readouterr().out)  # one JSON object, nothing else on stdout
    assert list(obj) == KEYS
    assert obj["n"] == 3
    for key in KEYS[:-2]:
        assert obj[key] is None or isinstance(obj[key], float), key
    assert obj["BERTScore"] > 0 and obj["prompt_similarity"] > 0 and obj["METEOR"] > 0
    assert obj["settings"]["bertscore"]["name"] == "all-MiniLM-L6-v2"
    assert obj["settings"]["combined"]["weights"] == [0.65, 0.35]


def test_table_output_and_weights(tmp_path, capsys):
    pred = _write(tmp_path / "pred.jsonl", ROWS)
    assert main(["evaluate", "captions", str(pred), "--metrics", "sacrebleu,rouge"]) == 0
    text = capsys.readouterr().out
    assert "sacreBLEU" in text and "ROUGE-2" in text and "not requested" in text


BAD = [
    (
        "missing_field",
        b'{"prediction": "a dog", "references": ["a dog"]}\n{"prediction": "a cat"}\n',
        2,
        "missing 'references'",
    ),
    ("non_string", b'{"prediction": 3, "references": ["a dog"]}\n', 1, "'prediction' must be a string"),
    (
        "null_pred",
        b'{"prediction": "ok", "references": ["a"]}\n\n{"prediction": null, "references": ["a"]}\n',
        3,
        "must be a string",
    ),
    ("empty_refs", b'{"prediction": "a dog", "references": []}\n', 1, "empty list"),
    ("empty_ref_string", b'{"prediction": "a dog", "references": ["a dog", " "]}\n', 1, "references[1]"),
    (
        "bad_utf8",
        b'{"prediction": "a dog", "references": ["a dog"]}\n{"prediction": "caf\xe9", "references": ["x"]}\n',
        2,
        "UTF-8",
    ),
    ("malformed", b'{"prediction": "a dog", "references": ["a dog"]\n', 1, "not valid JSON"),
    ("not_object", b'["a dog"]\n', 1, "JSON object"),
    ("caption_without_data", b'{"file_name": "1.png", "caption": "a dog"}\n', 1, "--data"),
]


@pytest.mark.parametrize(("name", "content", "line", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_the_line(tmp_path, capsys, name, content, line, message):
    pred = tmp_path / "pred.jsonl"
    pred.write_bytes(content)
    assert main(["evaluate", "captions", str(pred), "--json", "--metrics", "sacrebleu"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{pred}:{line}:" in captured.err and message in captured.err


def test_empty_file_and_missing_file(tmp_path, capsys):
    pred = tmp_path / "pred.jsonl"
    pred.write_text("\n")
    assert main(["evaluate", "captions", str(pred), "--metrics", "sacrebleu"]) == 1
    assert "empty file" in capsys.readouterr().err
    assert main(["evaluate", "captions", str(tmp_path / "nope.jsonl")]) == 1
    assert "not found" in capsys.readouterr().err


def _dataset(root):
    root.mkdir()
    rows = []
    for i, (split, refs) in enumerate([("test", ["a red square on white", "a red box"]), ("test", ["a blue circle"]),
                                       ("train", ["a green triangle"])]):  # fmt: skip
        Image.new("RGB", (32, 32), (40 * i, 90, 160)).save(root / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "text": refs, "split": split})
    _write(root / "metadata.jsonl", rows)
    return root


def test_join_with_data_writes_report_with_existing_images(tmp_path, capsys):
    data = _dataset(tmp_path / "ds")
    pred = _write(tmp_path / "captions.jsonl", [{"file_name": "0.png", "caption": "a red square"},
                                                {"file_name": "1.png", "caption": "a blue ball"}])  # fmt: skip
    out = tmp_path / "eval"
    argv = ["evaluate", "captions", str(pred), "--data", str(data), "--split", "test", "--json", "--out", str(out),
            "--metrics", "sacrebleu,rouge", "--rank-by", "ROUGE-1", "--top-k", "1"]  # fmt: skip
    assert main(argv) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["n"] == 2 and obj["settings"]["data"]["split"] == "test"
    assert json.loads((out / "metrics.json").read_text())["ROUGE-1"] == obj["ROUGE-1"]
    rows = [json.loads(x) for x in (out / "per_item.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in rows] == ["0.png", "1.png"] and rows[0]["references"][1] == "a red box"
    assert (out / "lengths.png").is_file() and (out / "examples.md").is_file()
    page = (out / "report.html").read_text()
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert any(s.startswith("thumbs/") for s in srcs) and all((out / s).is_file() for s in srcs)


def test_join_errors_name_the_line(tmp_path, capsys):
    data = _dataset(tmp_path / "ds")
    pred = _write(
        tmp_path / "c.jsonl", [{"file_name": "0.png", "caption": "x y"}, {"file_name": "2.png", "caption": "z"}]
    )
    assert main(["evaluate", "captions", str(pred), "--data", str(data), "--split", "test", "--metrics", "rouge"]) == 1
    assert f"{pred}:2:" in capsys.readouterr().err  # 2.png is in train, not test
    pred = _write(
        tmp_path / "d.jsonl", [{"file_name": "0.png", "caption": "x"}, {"file_name": "0.png", "caption": "y"}]
    )
    assert main(["evaluate", "captions", str(pred), "--data", str(data), "--metrics", "rouge"]) == 1
    assert "duplicate file_name" in capsys.readouterr().err


def test_compare_metrics_json_files(tmp_path, capsys):
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    a.write_text(json.dumps({"BLEU-4": 0.27, "BERTScore": 0.45, "combined": 0.39, "n": 10, "settings": {}}))
    b.write_text(json.dumps({"BLEU-4": 0.78, "BERTScore": 0.78, "combined": 0.78, "n": 10, "settings": {}}))
    assert main(["evaluate", "compare", str(a), str(b), "--json"]) == 0
    rows = {r["metric"]: r for r in json.loads(capsys.readouterr().out)["metrics"]}
    assert rows["BLEU-4"]["change"] == pytest.approx(0.51) and rows["BLEU-4"]["relative_change"] == pytest.approx(
        1.8889, abs=1e-4
    )
    assert main(["evaluate", "compare", str(a), str(b)]) == 0
    assert "+189%" in capsys.readouterr().out


def test_compare_scores_prediction_files(tmp_path, capsys):
    a = _write(tmp_path / "a.jsonl", ROWS)
    b = _write(tmp_path / "b.jsonl", [{**r, "prediction": r["references"][0]} for r in ROWS])
    assert main(["evaluate", "compare", str(a), str(b), "--json", "--metrics", "sacrebleu,rouge"]) == 0
    rows = {r["metric"]: r for r in json.loads(capsys.readouterr().out)["metrics"]}
    assert rows["sacreBLEU"]["b"] == pytest.approx(1.0) and rows["sacreBLEU"]["change"] > 0
    assert rows["BLEU-4"]["a"] is None and rows["BLEU-4"]["change"] is None

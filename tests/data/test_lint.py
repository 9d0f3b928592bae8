"""`vlgen data lint` (issue 18 item 3): every check on a small crafted folder, exit codes, --json, one line per
finding at any terminal width, and bad input as one-line errors. Tokenizer and CLIP are the tiny ones of
vlgen.testing (the CLIP BPE tokenizer has the real 77-token window)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from vlgen.cli import main
from vlgen.cli._console import err, out
from vlgen.data.lint import DEFAULT_TOKENIZER, common_phrases, lint_captions, mad_outliers, token_window


def write_set(root: Path, captions: dict[str, str | None], size: int = 16) -> Path:
    """`name.png` (a distinct colour each) with `name.txt` holding the caption; None: no sidecar."""
    root.mkdir(parents=True, exist_ok=True)
    for i, (name, caption) in enumerate(captions.items()):
        Image.new("RGB", (size, size), (40 * i % 256, 120, 200 - 10 * i % 200)).save(root / f"{name}.png")
        if caption is not None:
            (root / f"{name}.txt").write_text(caption, encoding="utf-8")
    return root


def write_metadata(root: Path, rows: list[dict], size: int = 16) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows):
        if isinstance(row.get("file_name"), str):
            Image.new("RGB", (size, size), (30 * i % 256, 90, 60)).save(root / row["file_name"])
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    """The tiny CLIP tokenizer (SDXL's kind, 77-token window) saved as a folder."""
    from vlgen.testing.clip import clip_tokenizer

    path = tmp_path_factory.mktemp("tok") / "clip-tokenizer"
    clip_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tok(tok_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tok_dir)


def checks(report, check: str) -> list:
    return [f for f in report.findings if f.check == check]


def lint(path: Path, **kw):
    kw.setdefault("tokenizer", None)
    return lint_captions(path, **kw)


# --- each check ----------------------------------------------------------------------------------------------


def test_missing_and_empty_captions_are_errors_naming_the_file(tmp_path):
    data = write_set(tmp_path / "d", {"a": "a dog on grass", "b": None, "c": "   \n", "d": "a cat"})
    report = lint(data)
    missing = checks(report, "missing")
    assert [(f.level, f.file_name) for f in missing] == [("error", "b.png"), ("error", "c.png")]
    assert missing[0].path == str(data / "b.txt") and "no b.txt beside b.png" in missing[0].message
    assert missing[1].path == str(data / "c.txt") and "empty" in missing[1].message
    assert not report.ok and len(report.errors) == 2
    assert str(missing[0]).startswith(f"{data / 'b.txt'}: error: ")


def test_trigger_absent_is_an_error_and_repeated_a_warning(tmp_path):
    data = write_set(
        tmp_path / "d",
        {"a": "photo of sks, a dog", "b": "a dog on grass", "c": "sks dog and SKS again", "d": "sksdog running"},
    )
    report = lint(data, trigger="sks")
    absent = checks(report, "trigger-missing")
    assert [f.file_name for f in absent] == ["b.png", "d.png"]  # a word of its own: 'sksdog' is not the trigger
    assert all(f.level == "error" and "'sks'" in f.message for f in absent)
    repeated = checks(report, "trigger-repeated")
    assert [(f.file_name, f.level, f.details["count"]) for f in repeated] == [("c.png", "warning", 2)]
    # a trigger of two words, however spaced
    two = write_set(tmp_path / "two", {"a": "photo of ohwx  man", "b": "ohwx man, smiling", "c": "a man"})
    assert [f.file_name for f in checks(lint(two, trigger="ohwx man"), "trigger-missing")] == ["c.png"]
    # without --trigger nothing is said about it
    assert not [f for f in lint(data).findings if f.check.startswith("trigger")]


def test_phrase_in_half_the_captions_is_reported_once_with_its_share(tmp_path):
    captions = {
        "a": "photo of sks, a woman with long red hair, in a park",
        "b": "sks woman with long red hair sitting on a bench",
        "c": "close-up of sks with long red hair, smiling",
        "d": "sks on a beach at sunset, red hair in the wind",
    }
    report = lint(write_set(tmp_path / "d", captions), trigger="sks")
    phrases = {f.details["phrase"]: f for f in checks(report, "phrase")}
    # 'long red hair' 3/4; 'red hair' is in all 4 (a higher share: reported too); 'woman with long red hair' 2/4.
    # Not reported: its sub-phrases with the same share ('long red'), stopword-edged ones ('with long red hair',
    # 'photo of'), and anything spanning the trigger.
    assert set(phrases) == {"red hair", "long red hair", "woman with long red hair"}, sorted(phrases)
    f = phrases["long red hair"]
    assert f.level == "warning" and f.details["count"] == 3 and f.details["share"] == 0.75
    assert "in 3 of 4 captions (75%)" in f.message and "'sks'" in f.message
    assert f.path == str(tmp_path / "d") and f.file_name is None


def test_phrase_below_half_is_not_reported_and_fixed_runs_merge(tmp_path):
    trait = "a woman with long red hair and green eyes"
    (p,) = common_phrases([f"{trait} in a park", f"{trait} on a bench", "a man", "a car"])
    # 5-word n-grams that always come together are reported as their one run, not as four overlapping pieces
    assert p.text == "woman with long red hair and green eyes" and p.count == 2 and p.share == 0.5
    assert common_phrases([f"{trait} in a park", "a man", "a car", "a dog"]) == []  # 1 of 4: below half
    # punctuation and case do not split a phrase; each caption counts once however often it repeats the phrase
    (q,) = common_phrases(["Red Hair, red hair!", "red-hair girl", "a cat"])
    assert (q.text, q.count) == ("red hair", 2)


def test_duplicate_captions_are_warnings_naming_the_first(tmp_path):
    data = write_set(
        tmp_path / "d", {"a": "A dog on grass", "b": "a dog  on grass", "c": "a cat", "d": "a dog on grass"}
    )
    dup = checks(lint(data), "duplicate")
    assert [f.file_name for f in dup] == ["b.png", "d.png"]
    assert all(f.level == "warning" and str(data / "a.txt") in f.message for f in dup)


def test_too_long_names_exactly_the_words_the_encoder_cuts(tmp_path, tok):
    unit = "a red circle on a blue square"  # 7 tokens of the tiny CLIP BPE
    n_unit = len(tok(unit, add_special_tokens=False)["input_ids"])
    fits = " ".join([unit] * (75 // n_unit))  # <= 75 tokens + <|startoftext|> <|endoftext|> = the 77 window
    long = " ".join([unit] * 12)
    data = write_set(tmp_path / "d", {"fits": fits, "long": long})
    (f,) = checks(lint(data, tokenizer=tok), "too-long")
    assert f.file_name == "long.png" and f.level == "warning"
    assert f.details["max_tokens"] == 77 and f.details["tokens"] == len(tok(long)["input_ids"]) > 77
    # what the text encoder keeps (tokenizer truncation, as SDXL encodes prompts) + the cut words = the caption
    kept = tok.decode(tok(long, truncation=True, max_length=77)["input_ids"], skip_special_tokens=True)
    assert long.startswith(kept.strip().rsplit(" ", 1)[0])
    assert f.details["cut"] and long.endswith(f.details["cut"]) and f"cut off: '{f.details['cut']}'" in f.message
    assert len(kept.split()) + len(f.details["cut"].split()) == len(long.split())


def test_window_is_the_tokenizers_own(tmp_path, tok_dir):
    """Another tokenizer brings its own window (T5's 512 for Flux); a 20-token one stands in here."""
    from vlgen.testing.clip import clip_tokenizer

    short = tmp_path / "short-tokenizer"
    clip_tokenizer().save_pretrained(short)
    config = json.loads((short / "tokenizer_config.json").read_text())
    (short / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 20}))
    data = write_set(tmp_path / "d", {"a": " ".join(["a red circle on a blue square"] * 3)})
    assert checks(lint(data, tokenizer=str(tok_dir)), "too-long") == []
    (f,) = checks(lint(data, tokenizer=str(short)), "too-long")
    assert f.details["max_tokens"] == 20
    assert token_window(__import__("transformers").AutoTokenizer.from_pretrained(short), "a red circle").cut == ""
    # a diffusers pipeline folder: the tokenizer sub-folder with the widest window (Flux: T5's tokenizer_2)
    pipe = tmp_path / "pipeline"
    clip_tokenizer().save_pretrained(pipe / "tokenizer")
    (pipe / "model_index.json").write_text("{}")
    assert lint(data, tokenizer=str(pipe)).settings["tokenizer"]["max_tokens"] == 77
    wide = clip_tokenizer()
    wide.model_max_length = 512
    wide.save_pretrained(pipe / "tokenizer_2")
    assert lint(data, tokenizer=str(pipe)).settings["tokenizer"]["max_tokens"] == 512


def test_slow_tokenizer_cuts_the_same_words(tok):
    """Tokenizers without offsets (slow ones) find the cut by words; it is the same cut."""

    class Slow:
        is_fast = False
        model_max_length = tok.model_max_length

        def num_special_tokens_to_add(self, pair=False):
            return tok.num_special_tokens_to_add(pair=pair)

        def __call__(self, text, return_offsets_mapping=False, **kw):
            assert not return_offsets_mapping
            return tok(text, **kw)

    for n in (10, 11, 12, 20):
        caption = "sks, " + " ".join(["a red circle on a blue square"] * n)
        assert token_window(Slow(), caption) == token_window(tok, caption)
    assert token_window(tok, caption).cut


def test_clip_outlier_below_median_minus_3_mad(tmp_path, tiny_clip_dir, capsys):
    """Seven close pairs score alike; the caption that does not fit its image scores far below (flagged); one that
    happens to score far *above* is not a problem (not flagged)."""
    data = tmp_path / "d"
    data.mkdir()
    captions = ["a red circle"] * 7 + ["a blue square", "two green triangles"]
    for i, caption in enumerate(captions):
        Image.new("RGB", (32, 32), (200, 30 + 3 * min(i, 7), 30)).save(data / f"{i}.png")
        (data / f"{i}.txt").write_text(caption)
    report = lint(data, clip_model=str(tiny_clip_dir))
    (f,) = checks(report, "clip")
    assert f.file_name == "7.png" and f.level == "warning"
    assert f.details["score"] < f.details["threshold"] == pytest.approx(f.details["median"] - 3 * f.details["mad"])
    assert report.settings["clip"]["model"] == str(tiny_clip_dir)
    assert checks(report, "image") == [] and report.ok  # warnings only
    # the same through the command, as JSON on stdout (the progress bar goes to stderr)
    assert main(["data", "lint", str(data), "--tokenizer", "none", "--clip-model", str(tiny_clip_dir), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert [(f["file_name"], f["score"]) for f in obj["findings"] if f["check"] == "clip"] == [
        ("7.png", pytest.approx(f.details["score"]))
    ]
    assert obj["settings"]["clip"]["threshold"] == pytest.approx(f.details["threshold"])


def test_mad_outliers_reference():
    med, mad, threshold, low = mad_outliers([10.0, 11.0, 12.0, 13.0, 14.0, 1.0, 30.0])
    assert (med, mad, threshold, low) == (12.0, 2.0, 6.0, [5])


def test_clip_unreadable_image_is_an_error(tmp_path, tiny_clip_dir):
    data = write_set(tmp_path / "d", {str(i): f"caption {i}" for i in range(5)})
    (data / "2.png").write_bytes(b"not an image")
    report = lint(data, clip_model=str(tiny_clip_dir))
    (f,) = checks(report, "image")
    assert f.level == "error" and f.file_name == "2.png" and not report.ok
    assert report.settings["clip"]["skipped"]  # 4 scored captions: too few for a median and MAD


# --- metadata.jsonl datasets ---------------------------------------------------------------------------------


def test_metadata_rows_name_line_and_image(tmp_path):
    rows = [
        {"file_name": "a.png", "text": "sks dog"},
        {"file_name": "b.png", "text": ""},
        {"file_name": "c.png", "text": ["sks dog on grass", "a dog"]},
        {"file_name": "d.png", "prompt": "sks"},
    ]
    data = write_metadata(tmp_path / "d", rows)
    (data / "stray.txt").write_text("ignored: the metadata holds the captions")
    report = lint(data, trigger="sks")
    meta = str(data / "metadata.jsonl")
    lines = [str(f) for f in report.findings if f.check != "phrase"]
    assert lines == [
        f"{meta}:2: error: b.png: caption in 'text' is empty",
        f"{meta}:3: error: c.png: no trigger 'sks' in the caption",
        f"{meta}:4: error: d.png: no caption in column 'text'",
    ]
    assert report.n_captions == 5 and report.n_images == 4 and report.source == "metadata"
    other = lint(data, caption_column="prompt")
    assert [f.line for f in checks(other, "missing")] == [1, 2, 3]


# --- the command ---------------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_exit_codes_and_summary(tmp_path, tok_dir, capsys):
    clean = write_set(tmp_path / "clean", {"a": "photo of sks dog", "b": "sks cat on a mat", "c": "a sks bird"})
    assert main(["data", "lint", str(clean), "--trigger", "sks", "--tokenizer", str(tok_dir)]) == 0
    assert _lines(capsys.readouterr().out) == [f"{clean}: 3 captions of 3 images; 0 error(s), 0 warning(s)"]
    # warnings alone pass
    warned = write_set(tmp_path / "warned", {"a": "sks dog", "b": "sks dog", "c": "sks bird"})
    assert main(["data", "lint", str(warned), "--trigger", "sks", "--tokenizer", "none"]) == 0
    assert "warning: duplicate caption" in capsys.readouterr().out
    # any error fails
    assert main(["data", "lint", str(warned), "--trigger", "cat", "--tokenizer", "none"]) == 1


def test_json_schema(tmp_path, tok_dir, capsys):
    data = write_set(tmp_path / "d", {"a": "sks dog with red hair", "b": None, "c": "sks cat with red hair"})
    assert main(["data", "lint", str(data), "--trigger", "sks", "--tokenizer", str(tok_dir), "--json"]) == 1
    captured = capsys.readouterr()
    obj = json.loads(captured.out)  # one JSON object, nothing else on stdout
    assert set(obj) == {
        "dir",
        "source",
        "n_images",
        "n_captions",
        "n_errors",
        "n_warnings",
        "ok",
        "findings",
        "settings",
    }
    assert (obj["source"], obj["n_images"], obj["n_captions"], obj["ok"]) == ("sidecars", 3, 3, False)
    assert obj["n_errors"] == 1 and obj["n_warnings"] == len(obj["findings"]) - 1
    base = {"level", "check", "path", "line", "file_name", "message"}
    for f in obj["findings"]:
        assert base <= set(f) and f["level"] in ("error", "warning")
    phrase = next(f for f in obj["findings"] if f["check"] == "phrase")
    assert (phrase["phrase"], phrase["count"], phrase["share"]) == ("red hair", 2, 1.0)
    assert obj["settings"]["tokenizer"] == {"name": str(tok_dir), "max_tokens": 77}
    assert obj["settings"]["trigger"] == "sks" and obj["settings"]["clip"] is None


@pytest.fixture
def columns(monkeypatch):
    def set_to(n: int) -> None:
        monkeypatch.setenv("COLUMNS", str(n))
        monkeypatch.setenv("VLGEN_PROGRESS", "0")
        for console in (err, out):
            monkeypatch.setattr(console, "width", n)

    return set_to


@pytest.mark.parametrize("width", [40, 300])
def test_one_line_per_finding_at_any_width(width, columns, tmp_path, tok_dir, capsys):
    columns(width)
    data = write_set(
        tmp_path / "a-dataset-folder-whose-name-alone-is-longer-than-forty-columns",
        {
            "no-trigger-in-this-caption": "a dog on grass with a long red lead",
            "missing-caption": None,
            "too-long": "sks " + " ".join(["a red circle on a blue square"] * 12),
            "dup-1": "sks dog with a long red lead",
            "dup-2": "sks dog with a long red lead",
        },
    )
    assert main(["data", "lint", str(data), "--trigger", "sks", "--tokenizer", str(tok_dir)]) == 1
    captured = capsys.readouterr()
    lines = _lines(captured.out)
    report = lint_captions(data, trigger="sks", tokenizer=str(tok_dir))
    assert lines == [*map(str, report.findings), report.summary()]
    assert {f.check for f in report.findings} >= {"trigger-missing", "missing", "too-long", "duplicate", "phrase"}
    assert not any("…" in line for line in lines) and max(map(len, lines)) > 40
    assert all(line.startswith(str(data)) for line in lines)
    assert captured.err == ""


def test_bad_input_is_one_line(tmp_path, capsys, monkeypatch):
    def error_line(*argv: str) -> str:
        assert main(["data", "lint", *argv]) == 1
        lines = _lines(capsys.readouterr().err)
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        return lines[0]

    missing = tmp_path / "no-such-folder"
    assert str(missing) in error_line(str(missing)) and "not found" in error_line(str(missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images" in error_line(str(empty), "--tokenizer", "none")
    (empty / "metadata.jsonl").write_text("\n")
    assert "no rows" in error_line(str(empty), "--tokenizer", "none")
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("x")
    assert "expected a dataset folder" in error_line(str(a_file))
    data = write_metadata(tmp_path / "meta", [{"file_name": "a.png", "text": "a dog"}])
    line = error_line(str(data), "--caption-column", "caption", "--tokenizer", "none")
    assert "'caption'" in line and "--caption-column" in line
    assert "--trigger" in error_line(str(data), "--trigger", " , ", "--tokenizer", "none")
    # the default tokenizer, not cached and offline: names the option and how to skip the check
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    line = error_line(str(data))
    assert DEFAULT_TOKENIZER in line and "--tokenizer none" in line and "--tokenizer a local directory" in line


def test_cli_default_tokenizer_is_the_librarys():
    from vlgen.cli import data as cli_data

    assert cli_data.DEFAULT_TOKENIZER == DEFAULT_TOKENIZER

"""WebDataset shards and parquet as inputs (vlgen.data.shards): listing, keys, captions, bad samples, and
`vlgen caption` / `evaluate captions --data` / `autocaption` over them with the tiny CNN-LSTM."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vlgen.captioning.batch import caption_images, collect_inputs
from vlgen.captioning.registry import load_captioner
from vlgen.cli import main
from vlgen.data import shards_parquet, shards_sample, shards_tar
from vlgen.data.shards import expand_braces, find_source, list_samples, load_reference_records, load_sample_image
from vlgen.errors import DataError, ImageLoadError

COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (200, 30, 200)]


def png(i: int, size: int = 24) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), COLORS[i % len(COLORS)]).save(buf, format="PNG")
    return buf.getvalue()


def write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> Path:
    """A shard as webdataset writes it: `key.ext` members, a sample's members one after another."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tf:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def make_shards(root: Path, n_shards: int = 2, per_shard: int = 3) -> tuple[Path, dict[str, str]]:
    """`root/0000{0,1}.tar`; captions alternate between a .txt member and a .json `caption`."""
    captions = {}
    for s in range(n_shards):
        samples = []
        for j in range(per_shard):
            i = s * per_shard + j
            key, caption = f"{i:06d}", f"a square of colour {i}"
            captions[key] = caption
            text = {"txt": caption.encode()} if i % 2 == 0 else {"json": json.dumps({"caption": caption}).encode()}
            samples.append((key, {"png": png(i), **text}))
        write_tar(root / f"{s:05d}.tar", samples)
    return root, captions


def write_parquet(path: Path, columns: dict, row_group_size: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# ---------------------------------------------------------------------------------------------- listing


def test_brace_expansion_as_webdataset():
    assert expand_braces("s/{00000..00002}.tar") == ["s/00000.tar", "s/00001.tar", "s/00002.tar"]
    assert expand_braces("{a,b}-{1..2}.tar") == ["a-1.tar", "a-2.tar", "b-1.tar", "b-2.tar"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_tar_samples_keys_images_and_captions(tmp_path):
    root, captions = make_shards(tmp_path / "shards")
    for raw in (root, f"{root}/*.tar", f"{root}/{{00000..00001}}.tar"):
        samples = list_samples(raw, with_captions=True)
        assert [s.key for s in samples] == sorted(captions)
        assert {s.key: s.captions for s in samples} == {k: [c] for k, c in captions.items()}
    s = samples[4]
    assert s.ref.source == str(root / "00001.tar") and s.ref.member == "000004.png"
    assert load_sample_image(s.ref).getpixel((0, 0)) == COLORS[4]
    assert find_source(root / "00000.tar")[0] == "tar"


def test_webdataset_naming_subfolders_multi_dot_extensions_and_image_choice(tmp_path):
    shard = write_tar(
        tmp_path / "a.tar",
        [("dir/x", {"seg.png": png(0), "jpg": png(1), "txt": b"x"}), ("y", {"PNG": png(2), "txt": b"y"})],
    )
    (x, y) = list_samples(shard)
    assert (x.key, x.ref.member, y.key, y.ref.member) == ("dir/x", "dir/x.jpg", "y", "y.PNG")
    only_seg = list_samples(shard, image_column="seg.png")[0]
    assert only_seg.ref.member == "dir/x.seg.png"


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_header_scan_reads_what_tarfile_reads(tmp_path, fmt):
    """The fast header scan against tarfile: long names (ustar prefix, GNU long name, pax path), non-ASCII
    names, directories, empty members; a link sends the shard to tarfile (same samples)."""
    path = tmp_path / "a.tar"
    names = ["a.png", "a.txt", "d" * 60 + "/" + "x" * 90 + ".png", "ünï/ké.txt", "e.json"]  # 155 chars: ustar prefix
    with tarfile.open(path, "w", format=fmt) as tf:
        info = tarfile.TarInfo("somedir")
        info.type = tarfile.DIRTYPE
        tf.addfile(info)
        for i, name in enumerate(names):
            data = png(i) * (i + 1) if name.endswith(".png") else b"" if name == "e.json" else b"caption"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    with tarfile.open(path) as tf:
        expected = [(m.name, m.offset_data, m.size) for m in tf if m.isfile()]
    with open(path, "rb") as f:
        assert shards_tar._scan_tar(f, path.stat().st_size) == expected
    with tarfile.open(path, "a", format=fmt) as tf:
        link = tarfile.TarInfo("z.png")
        link.type, link.linkname = tarfile.SYMTYPE, "a.png"
        tf.addfile(link)
    with open(path, "rb") as f:
        assert shards_tar._scan_tar(f, path.stat().st_size) is None
    assert list(shards_tar._tar_entries(path)) == expected


def test_img2dataset_and_hf_parquet_layouts(tmp_path, monkeypatch):
    for module in (shards_parquet, shards_sample):  # listing and reading back each batch by BATCH_ROWS
        monkeypatch.setattr(module, "BATCH_ROWS", 2)  # several batches and row groups with 5 rows
    img2 = write_parquet(
        tmp_path / "i2d" / "00000.parquet",
        {"key": [f"k{i}" for i in range(5)], "jpg": [png(i) for i in range(5)], "txt": [f"t{i}" for i in range(5)]},
        row_group_size=3,
    )
    samples = list_samples(img2.parent, with_captions=True)
    assert [(s.key, s.captions) for s in samples] == [(f"k{i}", [f"t{i}"]) for i in range(5)]
    assert [load_sample_image(s.ref).getpixel((0, 0)) for s in samples] == COLORS[:5]
    assert load_sample_image(samples[1].ref).getpixel((0, 0)) == COLORS[1]  # going back reopens the row group
    # img2dataset keeps a row per failed download (no image): not a sample, as in its tar output
    failed = write_parquet(
        tmp_path / "f.parquet",
        {"key": ["a", "b"], "jpg": [png(0), None], "txt": ["x", None], "status": ["success", "failed_to_download"]},
    )
    assert [s.key for s in list_samples(failed, with_captions=True)] == ["a"]

    # Hugging Face datasets: image {bytes, path}, text, no key column -> the row number across files
    hf = tmp_path / "hf" / "data"
    for f, rows in (("train-00000-of-00002.parquet", [0, 1, 2]), ("train-00001-of-00002.parquet", [3])):
        image = [{"bytes": png(i), "path": f"{i}.png"} for i in rows]
        write_parquet(hf / f, {"image": image, "text": [f"c{i}" for i in rows]}, row_group_size=2)
    samples = list_samples(hf.parent, with_captions=True)
    assert [(s.key, s.captions) for s in samples] == [(str(i), [f"c{i}"]) for i in range(4)]
    assert [n for n, _ in collect_inputs(sorted(hf.glob("*.parquet")))] == ["0", "1", "2", "3"]  # files one by one
    assert load_sample_image(samples[3].ref).getpixel((0, 0)) == COLORS[3]

    # a file_name column names the rows; columns can be named
    named = write_parquet(tmp_path / "n.parquet", {"file_name": ["a.png"], "pixels": [png(0)], "alt": ["x"]})
    (s,) = list_samples(named, image_column="pixels", caption_column="alt", with_captions=True)
    assert (s.key, s.captions) == ("a.png", ["x"])
    with pytest.raises(DataError, match=r"n\.parquet: no image column.*--image-column"):
        list_samples(named)


def test_key_in_two_shards_is_refused_naming_both(tmp_path):
    a = write_tar(tmp_path / "s" / "a.tar", [("k1", {"png": png(0)}), ("k2", {"png": png(1)})])
    b = write_tar(tmp_path / "s" / "b.tar", [("k2", {"png": png(2)})])
    for inputs in ([tmp_path / "s"], [a, b]):  # a folder, or the shards one by one (as a shell expands *.tar)
        with pytest.raises(DataError) as e:
            collect_inputs(inputs)
        assert "'k2'" in str(e.value) and str(a) in str(e.value) and str(b) in str(e.value)
    write_tar(tmp_path / "t" / "c.tar", [("k1", {"png": png(0)}), ("k2", {"png": png(1)}), ("k1", {"txt": b"x"})])
    with pytest.raises(DataError, match=r"c\.tar: sample key 'k1' appears twice in"):
        list_samples(tmp_path / "t")


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match=r"no such shard"):
        list_samples(f"{tmp_path}/{{0..1}}.tar")
    with pytest.raises(DataError, match=r"no files match"):
        list_samples(f"{tmp_path}/*.tar")
    with pytest.raises(DataError, match=r"x\.tar\.gz: compressed shards are not supported"):
        list_samples(tmp_path / "x.tar.gz")
    (tmp_path / "bad.tar").write_bytes(b"not a tar" * 100)
    with pytest.raises(DataError, match=r"bad\.tar: not a readable tar shard"):
        list_samples(tmp_path / "bad.tar")
    shard = write_tar(tmp_path / "nocap.tar", [("k", {"png": png(0)})])
    with pytest.raises(DataError, match=r"nocap\.tar \(sample 'k'\): no caption"):
        list_samples(shard, with_captions=True)
    # a sample without an image, and an image that does not decode: errors at decode time, naming shard + key
    shard = write_tar(tmp_path / "s.tar", [("a", {"txt": b"x"}), ("b", {"png": b"garbage"})])
    a, b = list_samples(shard)
    with pytest.raises(ImageLoadError, match=r"s\.tar \(sample 'a'\): no image member"):
        load_sample_image(a.ref)
    with pytest.raises(ImageLoadError, match=r"s\.tar \(sample 'b'\): not an image"):
        load_sample_image(b.ref)


def test_folders_keep_their_meaning(tmp_path):
    """A folder with images is an image folder even beside a tar; img2dataset's parquet beside tars is ignored."""
    (tmp_path / "imgs").mkdir()
    Image.open(io.BytesIO(png(0))).save(tmp_path / "imgs" / "a.png")
    write_tar(tmp_path / "imgs" / "x.tar", [("k", {"png": png(0)})])
    assert find_source(tmp_path / "imgs") is None
    write_tar(tmp_path / "i2d" / "00000.tar", [("k", {"png": png(0)})])
    write_parquet(tmp_path / "i2d" / "00000.parquet", {"key": ["k"], "url": ["http://x"]})
    assert find_source(tmp_path / "i2d") == ("tar", [tmp_path / "i2d" / "00000.tar"])


# ---------------------------------------------------------------------------------------------- commands


def test_caption_shards_resume_and_parquet_output(tmp_path, tiny_cnn_lstm_dir, capsys):
    root, captions = make_shards(tmp_path / "shards")
    out = tmp_path / "caps.parquet"
    base = ["caption", f"{root}/{{00000..00001}}.tar", "--model", str(tiny_cnn_lstm_dir), "--num-beams", "1"]
    assert main([*base, "--out", str(out)]) == 0
    journal = tmp_path / "caps.jsonl"
    rows = _rows(journal)
    assert [r["file_name"] for r in rows] == sorted(captions)
    assert pq.read_table(out).to_pylist() == rows  # the parquet holds what the journal holds
    assert "captioned 6 images" in capsys.readouterr().err

    # rerun on the same output: nothing is captioned again
    assert main([*base, "--out", str(out)]) == 0
    assert "captioned 0 images, 6 already in" in capsys.readouterr().err
    assert _rows(journal) == rows and pq.read_table(out).to_pylist() == rows


def test_caption_bad_sample_fails_in_one_line_or_is_skipped(tmp_path, tiny_cnn_lstm_dir, capsys):
    shard = write_tar(
        tmp_path / "s" / "00000.tar", [("a", {"png": png(0)}), ("b", {"png": b"broken"}), ("c", {"png": png(2)})]
    )
    out = tmp_path / "caps.jsonl"
    base = ["caption", str(shard), "--model", str(tiny_cnn_lstm_dir), "--num-beams", "1", "--out", str(out)]
    assert main(base) == 1
    lines = [x for x in capsys.readouterr().err.splitlines() if not x.startswith("captioning ")]  # progress bar
    assert len(lines) == 1 and lines[0].startswith(f"error: {shard} (sample 'b'): not an image"), lines
    assert [r["file_name"] for r in _rows(out)] == ["a"]  # the sample before it is kept

    assert main([*base, "--on-error", "skip"]) == 0
    err = capsys.readouterr().err
    assert f"skipped b in {shard}: not an image" in err
    assert [r["file_name"] for r in _rows(out)] == ["a", "c"]
    (skipped,) = _rows(tmp_path / "caps.skipped.jsonl")
    assert skipped["file_name"] == "b" and skipped["path"] == str(shard)


def test_parquet_rows_named_by_row_number_caption_in_two_ranks(tmp_path, tiny_cnn_lstm_dir):
    """Ranks take every N-th sample of the full list; rank 0 merges: the same rows as one process."""
    data = write_parquet(tmp_path / "d.parquet", {"image": [{"bytes": png(i), "path": None} for i in range(5)]})
    items = collect_inputs([data])
    assert [n for n, _ in items] == ["0", "1", "2", "3", "4"]
    cap = load_captioner(tiny_cnn_lstm_dir)
    one = tmp_path / "one.jsonl"
    caption_images(cap, items, one, batch_size=2)
    two = tmp_path / "two.jsonl"
    for rank in (1, 0):  # rank 0 last: it merges once both journals are written (the barrier, in sequence)
        caption_images(cap, items, two, batch_size=2, process_index=rank, num_processes=2, barrier=lambda: None)
    assert two.read_bytes() == one.read_bytes()


def test_evaluate_captions_joins_shard_references_by_key(tmp_path, capsys):
    root, captions = make_shards(tmp_path / "shards", n_shards=1)
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps({"file_name": k, "caption": c}) + "\n" for k, c in captions.items()))
    argv = ["evaluate", "captions", str(pred), "--data", str(root), "--metrics", "sacrebleu", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["sacreBLEU"] == pytest.approx(1.0)
    assert [r.file_name for r in load_reference_records(root)] == sorted(captions)
    with pytest.raises(DataError, match="shards have no splits"):
        load_reference_records(root, split="test")


def test_split_picks_hugging_face_parquet_files(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        rows = {"image": [{"bytes": png(i), "path": None} for i in range(n)], "text": [f"{split}{i}" for i in range(n)]}
        write_parquet(tmp_path / "data" / f"{split}-00000-of-00001.parquet", rows)
    assert [r.captions for r in load_reference_records(tmp_path, split="test")] == [["test0"], ["test1"]]
    assert [n for n, _ in collect_inputs([tmp_path], split="train")] == ["0", "1", "2"]
    with pytest.raises(DataError, match="--split 'validation': no parquet file of that split"):
        collect_inputs([tmp_path], split="validation")


def test_autocaption_over_shards_writes_the_metadata_named_by_out(tmp_path, tiny_cnn_lstm_dir, capsys):
    root, captions = make_shards(tmp_path / "shards", n_shards=1)
    argv = ["autocaption", str(root), "--model", str(tiny_cnn_lstm_dir), "--num-beams", "1", "--device", "cpu"]
    assert main(argv) == 1
    assert "--out" in capsys.readouterr().err
    meta = tmp_path / "meta.jsonl"
    assert main([*argv, "--out", str(meta), "--template", "TOK, {caption}"]) == 0
    rows = _rows(meta)
    assert [r["file_name"] for r in rows] == sorted(captions) and all(r["text"].startswith("TOK, ") for r in rows)
    assert main([*argv, "--out", str(meta)]) == 0  # rerun: every row kept
    assert "captioned 0, kept 3" in capsys.readouterr().out

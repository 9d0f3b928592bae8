"""Importers on fixtures in the real formats, driven through the real CLI (`vlgen.cli.main`)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from datafixtures import FLICKR_QUIRK_ID, write_image

from vlgen.cli import main
from vlgen.data import load_image, load_records


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def splits_of(out: Path) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for r in load_records(out):
        result.setdefault(r.split, set()).add(r.file_name)  # type: ignore[arg-type]
    return result


# --- Flickr8k ---------------------------------------------------------------------------------------


def test_flickr8k_official_splits_quirk_and_unlisted(flickr8k_src, tmp_path: Path, capsys) -> None:
    src, info = flickr8k_src
    out = tmp_path / "out"
    assert main(["data", "import", "flickr8k", str(src), str(out)]) == 0
    assert splits_of(out) == {k: set(v) for k, v in info["splits"].items()}
    recs = load_records(out)
    assert all(len(r.captions) == 5 for r in recs) and recs[0].captions[0].startswith("A dog number")
    assert all(load_image(r.path).size == (8, 8) for r in recs)
    left_out = {row["item"]: row["reason"] for row in read_jsonl(out / "skipped.jsonl")}
    assert set(left_out) == {FLICKR_QUIRK_ID, *info["unlisted"]}
    assert "5 caption(s)" in left_out[FLICKR_QUIRK_ID] and "no image file" in left_out[FLICKR_QUIRK_ID]
    assert all("no official split" in left_out[n] for n in info["unlisted"])
    meta = json.loads((out / "import.json").read_text())
    assert meta["split_sizes"] == {"train": 6, "validation": 2, "test": 2} and meta["excluded"] == 3
    assert meta["splits_from"] == "source" and meta["captions"] == 50
    err = capsys.readouterr().err
    assert "wrote 10 images, 50 captions" in err and "left out (by design): 3 item(s)" in err


def test_flickr8k_listed_image_missing_fails_then_skips(flickr8k_src, tmp_path: Path, capsys) -> None:
    src, info = flickr8k_src
    gone = info["splits"]["test"][0]
    (src / "Flicker8k_Dataset" / gone).unlink()
    assert main(["data", "import", "flickr8k", str(src), str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert f"{gone}: listed in Flickr_8k.testImages.txt but the image file is missing" in err
    assert "Traceback" not in err and "--on-error skip" in err
    assert main(["data", "import", "flickr8k", str(src), str(tmp_path / "b"), "--on-error", "skip"]) == 0
    skipped = [r for r in read_jsonl(tmp_path / "b" / "skipped.jsonl") if r["kind"] == "error"]
    assert [r["item"] for r in skipped] == [gone]
    assert splits_of(tmp_path / "b")["test"] == set(info["splits"]["test"][1:])


def test_flickr8k_malformed_token_line_names_file_and_line(flickr8k_src, tmp_path: Path, capsys) -> None:
    src, _ = flickr8k_src
    token = src / "Flickr8k_text" / "Flickr8k.token.txt"
    lines = token.read_text().splitlines()
    lines.insert(2, "this line has no tab")
    token.write_text("\n".join(lines) + "\n")
    assert main(["data", "import", "flickr8k", str(src), str(tmp_path / "o")]) == 1
    assert f"{token}:3: line 3: expected 'IMAGE.jpg#N<TAB>caption'" in capsys.readouterr().err


def test_missing_token_file_and_non_empty_out(flickr8k_src, tmp_path: Path, capsys) -> None:
    src, _ = flickr8k_src
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main(["data", "import", "flickr8k", str(src), str(tmp_path / "full")]) == 1
    assert "output folder is not empty (pass --overwrite" in capsys.readouterr().err
    (src / "Flickr8k_text" / "Flickr8k.token.txt").unlink()
    assert main(["data", "import", "flickr8k", str(src), str(tmp_path / "o")]) == 1
    assert "Flickr8k.token.txt not found anywhere below the source folder" in capsys.readouterr().err


# --- COCO -------------------------------------------------------------------------------------------


def test_coco_without_karpathy_uses_seeded_splits(coco_src, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["data", "import", "coco", str(coco_src["annotations"]), str(coco_src["images_dir"]), str(out)]
    assert main(args) == 0
    recs = load_records(out)
    assert len(recs) == 10 and sorted(len(r.captions) for r in recs) == [5] * 5 + [6] * 5
    assert recs[0].captions[0] == "A photo 0 of a thing 0."  # stripped
    assert recs[0].extra == {"coco_id": coco_src["ids"][0]}
    assert {k: len(v) for k, v in splits_of(out).items()} == {"train": 6, "validation": 2, "test": 2}
    assert main([*args[:-1], str(tmp_path / "again")]) == 0
    assert splits_of(tmp_path / "again") == splits_of(out)  # same seed, same splits
    assert main([*args[:-1], str(tmp_path / "seed7"), "--seed", "7"]) == 0
    assert splits_of(tmp_path / "seed7") != splits_of(out)


def test_coco_with_karpathy_split(coco_src, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["data", "import", "coco", str(coco_src["annotations"]), str(coco_src["images_dir"]), str(out)]
    assert main([*args, "--karpathy-split", str(coco_src["karpathy"])]) == 0
    ids = coco_src["ids"]
    by_id = {r.extra["coco_id"]: r.split for r in load_records(out)}
    # fixture cycles train, restval, val, test: restval -> train, val -> validation
    assert by_id == {ids[i]: ["train", "train", "validation", "test"][i % 4] for i in range(9)}
    excluded = read_jsonl(out / "skipped.jsonl")
    assert [e["item"] for e in excluded] == [f"{ids[9]:012d}.jpg"] and "not in the Karpathy" in excluded[0]["reason"]
    meta = json.loads((out / "import.json").read_text())
    assert meta["karpathy_images_not_in_annotations"] == 1 and meta["splits_from"] == "source"


def test_coco_annotation_for_unknown_image(coco_src, tmp_path: Path, capsys) -> None:
    doc = json.loads(coco_src["annotations"].read_text())
    doc["annotations"].append({"image_id": 5, "id": 1, "caption": "orphan"})
    coco_src["annotations"].write_text(json.dumps(doc))
    args = ["data", "import", "coco", str(coco_src["annotations"]), str(coco_src["images_dir"])]
    assert main([*args, str(tmp_path / "a")]) == 1
    assert "annotations[55]: image_id 5 is not in 'images'" in capsys.readouterr().err
    assert main([*args, str(tmp_path / "b"), "--on-error", "skip"]) == 0
    assert "skipped (errors): 1 item(s)" in capsys.readouterr().err


# --- DiffusionDB ------------------------------------------------------------------------------------


def _ddb(src: Path, out: Path, *extra: str) -> list:
    assert main(["data", "import", "diffusiondb", str(src), str(out), *extra]) == 0
    return load_records(out)


def test_diffusiondb_seeded_sample_from_zip_and_folder(diffusiondb_src, tmp_path: Path) -> None:
    src, info = diffusiondb_src
    a = _ddb(src, tmp_path / "a", "--sample", "6", "--seed", "42")
    b = _ddb(src, tmp_path / "b", "--sample", "6", "--seed", "42")
    c = _ddb(src, tmp_path / "c", "--sample", "6", "--seed", "1")
    names = lambda recs: sorted(r.file_name for r in recs)  # noqa: E731
    assert names(a) == names(b) and names(a) != names(c)
    assert set(names(a)) <= set(info["available"])  # never sampled from the part that is not present
    rows = {r["image_name"]: r for r in info["rows"]}
    for r in a:
        assert r.captions == [rows[r.file_name]["prompt"]] and r.extra["prompt"] == r.captions[0]
        assert r.extra["seed"] == rows[r.file_name]["seed"] and r.extra["part_id"] in (1, 2)
        assert load_image(r.path).size == (8, 8)
    meta = json.loads((tmp_path / "a" / "import.json").read_text())
    assert meta["rows_in_parts_not_present"] == 8 and meta["parts_present"] == [1, 2]
    everything = _ddb(src, tmp_path / "all")
    assert {r.extra["part_id"] for r in everything} == {1, 2} and len(everything) == 16
    nan_row = next(r for r in everything if r.file_name.startswith("01000003"))
    assert nan_row.extra["prompt_nsfw"] is None  # NaN is not JSON: stored as null


def test_diffusiondb_damaged_zip_member_and_too_large_sample(diffusiondb_src, tmp_path: Path, capsys) -> None:
    src, info = diffusiondb_src
    assert main(["data", "import", "diffusiondb", str(src), str(tmp_path / "x"), "--sample", "17"]) == 1
    assert "--sample 17 is more than the 16 images in the parts present" in capsys.readouterr().err
    victim = next(n for n in info["available"] if n.startswith("01"))
    with zipfile.ZipFile(src / "part-000001.zip") as z:
        members = {n: z.read(n) for n in z.namelist()}
    members[victim] = members[victim][:40]
    with zipfile.ZipFile(src / "part-000001.zip", "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    assert main(["data", "import", "diffusiondb", str(src), str(tmp_path / "y")]) == 1
    err = capsys.readouterr().err
    assert f"part-000001.zip/{victim}" in err and "corrupt" in err and "Traceback" not in err
    assert main(["data", "import", "diffusiondb", str(src), str(tmp_path / "z"), "--on-error", "skip"]) == 0
    assert len(load_records(tmp_path / "z")) == 15
    assert not (tmp_path / "z" / victim).exists()  # a skipped image is not copied


# --- plain folder -----------------------------------------------------------------------------------


def test_folder_with_sidecars(folder_src: Path, tmp_path: Path) -> None:
    (folder_src / "orphan.txt").write_text("caption with no image")
    out = tmp_path / "out"
    assert main(["data", "import", "folder", str(folder_src), str(out), "--split-ratios", "0.5,0.5,0"]) == 0
    recs = {r.file_name: r for r in load_records(out)}
    assert set(recs) == {"img0.png", "img1.png", "img2.png", "img3.png", "img4.png", "sub/img5.png"}
    assert recs["sub/img5.png"].captions == ["photo number 5"] and (out / "sub" / "img5.png").is_file()
    assert {r.split for r in recs.values()} == {"train", "validation"}
    assert [r["item"] for r in read_jsonl(out / "skipped.jsonl")] == ["orphan.txt"]


def test_folder_missing_sidecar(folder_src: Path, tmp_path: Path, capsys) -> None:
    (folder_src / "img2.txt").unlink()
    assert main(["data", "import", "folder", str(folder_src), str(tmp_path / "o")]) == 1
    assert "img2.png: no caption sidecar img2.txt" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_folder_with_captions_file(tmp_path: Path, fmt: str) -> None:
    src = tmp_path / "imgs"
    for i in range(4):
        write_image(src / f"p{i}.jpg", fmt="JPEG")
    rows = [("p0.jpg", "first, with a comma"), ("p0.jpg", "second ref"), ("p1.jpg", "one"), ("p2.jpg", "two")]
    if fmt == "csv":
        text = "file,caption\n" + "".join(f'{f},"{c}"\n' for f, c in rows)
    else:
        text = "".join(json.dumps({"file_name": f, "text": c}) + "\n" for f, c in rows)
    (tmp_path / f"caps.{fmt}").write_text(text)
    out = tmp_path / "out"
    assert main(["data", "import", "folder", str(src), str(out), "--captions", str(tmp_path / f"caps.{fmt}")]) == 0
    recs = {r.file_name: r.captions for r in load_records(out)}
    assert recs == {"p0.jpg": ["first, with a comma", "second ref"], "p1.jpg": ["one"], "p2.jpg": ["two"]}
    assert [r["item"] for r in read_jsonl(out / "skipped.jsonl")] == ["p3.jpg"]  # uncaptioned, reported


def test_folder_captions_file_escaping_path(tmp_path: Path, capsys) -> None:
    src = tmp_path / "imgs"
    write_image(src / "a.png")
    (tmp_path / "caps.csv").write_text("file,caption\na.png,fine\n../secret.png,sneaky\n")
    assert (
        main(["data", "import", "folder", str(src), str(tmp_path / "o"), "--captions", str(tmp_path / "caps.csv")]) == 1
    )
    assert (
        f"{tmp_path / 'caps.csv'}:3: ../secret.png: file_name '../secret.png' contains '..'" in capsys.readouterr().err
    )


def test_flickr8k_image_in_two_splits_is_left_out_of_both_as_reported(flickr8k_src, tmp_path: Path, capsys) -> None:
    src, info = flickr8k_src
    both = info["splits"]["train"][0]
    test_list = src / "Flickr8k_text" / "Flickr_8k.testImages.txt"
    test_list.write_text(test_list.read_text() + both + "\n")
    assert main(["data", "import", "flickr8k", str(src), str(tmp_path / "a")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"{both}: listed in both train and test" in err and "Traceback" not in err
    out = tmp_path / "b"
    assert main(["data", "import", "flickr8k", str(src), str(out), "--on-error", "skip"]) == 0
    skipped = [r for r in read_jsonl(out / "skipped.jsonl") if r["kind"] == "error"]
    assert [r["item"] for r in skipped] == [both] and "left out of both" in skipped[0]["reason"]
    kept = {r.file_name for r in load_records(out)}
    assert both not in kept and len(kept) == 9  # what the report says happened, happened

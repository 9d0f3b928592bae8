"""Generators of tiny datasets in the *real* on-disk formats of Flickr8k, COCO, DiffusionDB and plain folders.

Each generator writes a handful of 8x8 images plus the exact text/JSON/parquet layouts of the real
downloads (including their quirks), so the importers are tested on what users actually unzip.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

PALETTE = [(200, 30, 30), (30, 160, 60), (40, 80, 220), (230, 200, 40), (120, 40, 160), (20, 20, 20)]


def write_image(path: Path, color=(200, 30, 30), size=(8, 8), fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def png_bytes(color=(200, 30, 30), size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


# --- Flickr8k ---------------------------------------------------------------------------------------

FLICKR_QUIRK_ID = "2258277193_586949ec62.jpg.1"


def make_flickr8k(root: Path) -> dict:
    """Real layout: Flickr8k_text/ (token file + split lists) and Flicker8k_Dataset/ (sic) with the JPEGs.

    6 train, 2 dev, 2 test images, 2 images in no list, the `.jpg.1` caption id with no image, and a macOS
    `__MACOSX/._*.jpg` leftover.
    """
    names = [f"{1000268201 + i * 7919}_{i:03x}b08cb0e.jpg" for i in range(11)] + ["2258277193_586949ec62.jpg"]
    splits = {"train": names[:5] + [names[11]], "validation": names[5:7], "test": names[7:9]}
    unlisted = names[9:11]
    text_dir, img_dir = root / "Flickr8k_text", root / "Flicker8k_Dataset"
    for i, n in enumerate(names):
        write_image(img_dir / n, PALETTE[i % len(PALETTE)], fmt="JPEG")
    (root / "__MACOSX" / "Flicker8k_Dataset").mkdir(parents=True)
    (root / "__MACOSX" / "Flicker8k_Dataset" / f"._{names[0]}").write_bytes(b"\x00\x05\x16\x07 mac junk")
    lines = []
    for i, n in enumerate(names):
        lines += [f"{n}#{k}\tA dog number {i} runs through the grass , caption {k} ." for k in range(5)]
        if n == "2258277193_586949ec62.jpg":  # the real file puts the quirk id right after its image
            lines += [f"{FLICKR_QUIRK_ID}#{k}\tA man in a red shirt climbs , caption {k} ." for k in range(5)]
    text_dir.mkdir(parents=True)
    (text_dir / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (text_dir / "Flickr8k.lemma.token.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    files = {
        "train": "Flickr_8k.trainImages.txt",
        "validation": "Flickr_8k.devImages.txt",
        "test": "Flickr_8k.testImages.txt",
    }
    for split, fname in files.items():
        (text_dir / fname).write_text("\n".join(splits[split]) + "\n", encoding="utf-8")
    return {"splits": splits, "unlisted": unlisted, "names": names}


# --- COCO -------------------------------------------------------------------------------------------


def make_coco(root: Path, n: int = 10) -> dict:
    """captions_train2017.json style annotations + images, and a Karpathy dataset_coco.json (2014 names)."""
    ids = [391895 + 37 * i for i in range(n)]
    images, annotations = [], []
    for i, image_id in enumerate(ids):
        fname = f"{image_id:012d}.jpg"
        write_image(root / "train2017" / fname, PALETTE[i % len(PALETTE)], fmt="JPEG")
        images.append({"license": 1, "file_name": fname, "height": 8, "width": 8, "id": image_id})
        for k in range(5 if i % 2 else 6):  # real COCO has 5-7 captions per image
            annotations.append({"image_id": image_id, "id": 1000 * i + k, "caption": f"A photo {i} of a thing {k}. "})
    ann = {"info": {"year": 2017}, "licenses": [], "images": images, "annotations": annotations}
    (root / "annotations").mkdir(parents=True)
    ann_path = root / "annotations" / "captions_train2017.json"
    ann_path.write_text(json.dumps(ann))
    kp_splits = ["train", "restval", "val", "test"]
    kimages = []
    for i, image_id in enumerate(ids[:-1]):  # the last image is not in the Karpathy file
        kimages.append(
            {
                "filepath": "val2014" if i % 2 else "train2014",
                "sentids": [i],
                "filename": f"COCO_{'val' if i % 2 else 'train'}2014_{image_id:012d}.jpg",
                "imgid": i,
                "split": kp_splits[i % 4],
                "sentences": [{"tokens": ["a"], "raw": "A karpathy sentence.", "imgid": i, "sentid": i}],
                "cocoid": image_id,
            }
        )
    kimages.append(
        {
            "filepath": "val2014",
            "filename": "COCO_val2014_000000999999.jpg",
            "imgid": 99,
            "split": "test",
            "sentences": [],
            "cocoid": 999999,
        }
    )
    kp_path = root / "dataset_coco.json"
    kp_path.write_text(json.dumps({"images": kimages, "dataset": "coco"}))
    return {"annotations": ann_path, "images_dir": root / "train2017", "karpathy": kp_path, "ids": ids}


# --- DiffusionDB ------------------------------------------------------------------------------------


def make_diffusiondb(root: Path, per_part: int = 8) -> dict:
    """metadata.parquet with the real column names and dtypes; part 1 zipped (with its part json), part 2
    unzipped, part 3 listed in the metadata but not downloaded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for part in (1, 2, 3):
        part_json = {}
        for k in range(per_part):
            name = f"{part:02d}{k:06x}-aef7-4225-a9e9-f516527408ac.png"
            prompt = f"a castle on a hill, part {part} image {k}, trending on artstation"
            rows.append(
                {
                    "image_name": name,
                    "prompt": prompt,
                    "part_id": part,
                    "seed": 1000 + k,
                    "step": 50,
                    "cfg": 7.0,
                    "sampler": 8,
                    "width": 8,
                    "height": 8,
                    "user_name": "a" * 64,
                    "timestamp": datetime(2022, 8, 7, 22, 57, k, tzinfo=timezone.utc),
                    "image_nsfw": 0.1 * k,
                    "prompt_nsfw": float("nan") if k == 3 else 0.01,
                }
            )
            part_json[name] = {"p": prompt, "se": 1000 + k, "c": 7.0, "st": 50, "sa": "k_lms"}
            data = png_bytes(PALETTE[k % len(PALETTE)])
            if part == 1:
                with zipfile.ZipFile(root / "part-000001.zip", "a") as z:
                    z.writestr(name, data)
            elif part == 2:
                (root / "part-000002").mkdir(parents=True, exist_ok=True)
                (root / "part-000002" / name).write_bytes(data)
        if part == 1:
            with zipfile.ZipFile(root / "part-000001.zip", "a") as z:
                z.writestr("part-000001.json", json.dumps(part_json))
        elif part == 2:
            (root / "part-000002" / "part-000002.json").write_text(json.dumps(part_json))
    schema = pa.schema(
        [
            ("image_name", pa.string()),
            ("prompt", pa.string()),
            ("part_id", pa.uint16()),
            ("seed", pa.uint32()),
            ("step", pa.uint16()),
            ("cfg", pa.float32()),
            ("sampler", pa.uint8()),
            ("width", pa.uint16()),
            ("height", pa.uint16()),
            ("user_name", pa.string()),
            ("timestamp", pa.timestamp("us", tz="UTC")),
            ("image_nsfw", pa.float32()),
            ("prompt_nsfw", pa.float32()),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / "metadata.parquet")
    return {"rows": rows, "available": [r["image_name"] for r in rows if r["part_id"] in (1, 2)]}

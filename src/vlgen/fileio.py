"""Atomic file writes, JSONL appends and a strict JSONL reader (imports only vlgen.errors, also a leaf).

Writes go to a temp file in the same folder and are renamed into place, so a killed process never
leaves a half-written output behind. JSONL appends are flushed and fsync'd line by line so that
resumable jobs (captioning, import) can pick up exactly where they stopped.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vlgen.errors import DataError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return atomic_write_text(path, text)


class JsonlAppender:
    """Appends one JSON object per line, durable after each `write` (for resumable jobs)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A previous run killed mid-write can leave a partial last line: drop it before appending.
        if self.path.exists():
            raw = self.path.read_bytes()
            if raw and not raw.endswith(b"\n"):
                cut = raw.rfind(b"\n") + 1
                with open(self.path, "r+b") as f:
                    f.truncate(cut)
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, row: dict) -> None:
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl_objects(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSONL file.

    Strict and located: a line that is not UTF-8, not JSON, or not a JSON object raises `DataError` naming
    `path:line`. Bytes are decoded line by line so one bad byte is reported on its own line.
    """
    path = Path(path)
    try:
        raw_lines = path.read_bytes().split(b"\n")
    except OSError as e:
        raise DataError(f"cannot read the file ({e.strerror or e})", path=str(path)) from None
    rows: list[tuple[int, dict]] = []
    for no, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"line is not valid UTF-8 (byte {e.start})", path=str(path), line=no) from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e.msg} at column {e.colno})", path=str(path), line=no) from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {type(obj).__name__}", path=str(path), line=no)
        rows.append((no, obj))
    return rows

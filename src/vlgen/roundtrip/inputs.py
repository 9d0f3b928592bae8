"""What a round trip starts from: a PROMPTS file, or a folder of images."""

from __future__ import annotations

import os
from pathlib import Path

from vlgen.errors import DataError
from vlgen.fileio import read_jsonl_objects


def read_prompts_file(path: str | os.PathLike) -> list[str]:
    """Prompts from a `.jsonl` file (a string `prompt` per line) or a text file (one prompt a line).

    Strict: a line that is not JSON, has no `prompt` or an empty one, or is not UTF-8 raises DataError
    naming `file:line`; blank lines of a text file are skipped (they are no prompt).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError("no such file" if not p.exists() else "not a file", path=str(p))
    prompts: list[str] = []
    if p.suffix.lower() == ".jsonl":
        for line, obj in read_jsonl_objects(p):
            prompt = obj.get("prompt")
            if "prompt" not in obj:
                raise DataError(f"missing 'prompt' (keys: {', '.join(sorted(obj)) or 'none'})", path=str(p), line=line)
            if not isinstance(prompt, str) or not prompt.strip():
                raise DataError(f"'prompt' must be a non-empty string, got {prompt!r}", path=str(p), line=line)
            prompts.append(prompt.strip())
    else:
        try:
            raw_lines = p.read_bytes().split(b"\n")
        except OSError as e:
            raise DataError(f"cannot read the file ({e.strerror or e})", path=str(p)) from None
        for line, raw in enumerate(raw_lines, start=1):
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as e:
                raise DataError(f"line is not valid UTF-8 (byte {e.start})", path=str(p), line=line) from None
            if text:
                prompts.append(text)
    if not prompts:
        raise DataError("no prompts in the file", path=str(p))
    return prompts

"""Atomic file writes, JSONL appends and a strict JSONL reader (imports only vlgen.errors, also a leaf).

Writes go to a temp file (or folder) in the same folder and are renamed into place, so a killed process never
leaves a half-written output behind: `atomic_file`/`atomic_write_*` for files, `atomic_directory` for folders
(whose replacement of an old copy a crash can interrupt; `recover_directory` finishes it). JSONL appends are
flushed and fsync'd line by line so that resumable jobs (captioning, import) can pick up exactly where they
stopped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vlgen.errors import DataError, VlgenError


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Before long work: `path` can be a folder we write in (it is one, or can be made). Creates nothing.

    VlgenError naming the option, the path and the fix; `os.access` is only a first check (root passes it),
    the CLI turns any later OSError on a path into one line as well.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise VlgenError(f"{option} {p}: is a file, but a folder is needed here; remove it or choose another path")
    base = _nearest_existing(p)
    if not base.is_dir():
        raise VlgenError(f"{option} {p}: {base} is a file where a folder is needed; choose another path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise VlgenError(f"{option} {p}: cannot write in {base} (permission denied); choose a folder you can write to")
    return p


def check_output_file(path: str | os.PathLike, option: str = "--out") -> Path:
    """Before long work: `path` can be a file we write (or append to). Creates nothing; see check_output_dir."""
    p = Path(path)
    if p.is_dir():
        raise VlgenError(f"{option} {p}: is a folder, but a file is needed here; give a file path inside it")
    if p.exists():
        if not os.access(p, os.W_OK):
            raise VlgenError(f"{option} {p}: the file is not writable (permission denied); choose another path")
        return p
    base = _nearest_existing(p.parent)
    if not base.is_dir():
        raise VlgenError(f"{option} {p}: {base} is a file where a folder is needed; choose another path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise VlgenError(f"{option} {p}: cannot write in {base} (permission denied); choose a folder you can write to")
    return p


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask sets it too, racing threads that create files)
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def new_file_mode() -> int:
    """The mode `open(path, "w")` gives a new file (0o644 under the usual umask 022). mkstemp's temp files are
    0o600; an output renamed into place from one gets this mode, like the files written beside it."""
    return 0o666 & ~_umask()


def normalise_modes(root: str | os.PathLike) -> None:
    """Give `root` and everything under it the modes a plain `mkdir`/`open` would (0755/0644 under umask 022).

    For an output folder assembled in a temp folder before it is renamed into place: mkdtemp makes it 0700, and
    safetensors (0.8) writes its files 0600, while everything else vlgen writes beside them is 0644."""
    file_mode = new_file_mode()
    dir_mode = 0o777 & ~_umask()
    root = Path(root)
    for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
        if not path.is_symlink():
            path.chmod(dir_mode if path.is_dir() else file_mode)


def _fsync(path: Path) -> None:
    """Flush a file's data (or a folder's entries) to disk. Best effort: some file systems refuse it on folders."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp file path beside `path` for a writer that wants a file name (PIL's `save`, safetensors'
    `save_file`, `shutil.copyfile`, matplotlib); when the block ends without error the file is flushed to disk,
    given the mode a plain `open` would, and renamed over `path`. On error it is removed and `path` is untouched.

    A crash at any point leaves `path` complete, old or new (a rename within a folder is atomic), plus at worst a
    `.NAME.*.tmp` file. The temp name does not end in NAME's suffix: give writers that guess the format from the
    name an explicit one (`format="PNG"`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, new_file_mode())  # mkstemp's 0600 (and safetensors') -> what the files beside it get
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)


# Directory replacement. `out` is replaced by a complete new copy in three steps, each of which a crash can
# interrupt; `recover_directory` (run before every replacement) finishes or undoes an interrupted one:
#   1. the old `out` is renamed aside to `.NAME.old`   crash after 1: only `.NAME.old` -> renamed back (old copy)
#   2. the new copy is renamed to `out`                crash after 2: both -> `.NAME.old` is deleted (new copy)
#   3. `.NAME.old` is deleted                          crash during 3: as after 2
# Deleting the old copy before the rename (as `rmtree(out); rename(tmp, out)` does) would leave a window
# with neither. The new copy is assembled in `.NAME.PID@HOST-XXXXXXXX.tmp`; one whose process is gone is removed.


def _aside(out: Path) -> Path:
    return out.with_name(f".{out.name}.old")


def _temp_dir_prefix(out: Path) -> str:
    return f".{out.name}.{os.getpid()}@{socket.gethostname()}-"


def _pid_is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, it is another user's
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def recover_directory(out: str | os.PathLike) -> Path:
    """Finish or undo a replacement of the folder `out` that a crash interrupted (see `replace_directory`):
    afterwards `out` is the complete old or new copy (or absent if it never existed), and the temp folders of
    dead vlgen processes on this host are gone. Cheap when there is nothing to do; returns `out`."""
    out = Path(out)
    old = _aside(out)
    if old.exists() or old.is_symlink():
        if out.exists() or out.is_symlink():
            _remove(old)  # crashed after the new copy went in: the old one is garbage
        else:
            os.replace(old, out)  # crashed between the two renames: put the complete old copy back
    if out.parent.is_dir():
        pattern = re.compile(rf"\.{re.escape(out.name)}\.(\d+)@(.+)-[^-]+\.tmp")
        host = socket.gethostname()
        for entry in out.parent.iterdir():
            m = pattern.fullmatch(entry.name)
            if m and m.group(2) == host and not _pid_is_running(int(m.group(1))) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
    return out


def replace_directory(src: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Rename the complete folder `src` to `out` (same file system), replacing an old `out` so that a crash at
    any point leaves a complete old or new copy for `recover_directory`. An error before the new copy is in
    puts the old one back. Returns `out`."""
    src, out = Path(src), Path(out)
    recover_directory(out)
    old = _aside(out)
    had_old = out.exists() or out.is_symlink()
    if had_old:
        os.replace(out, old)  # step 1
    try:
        os.replace(src, out)  # step 2
    except BaseException:
        recover_directory(out)  # puts the old copy back (whatever another writer of `out` did meanwhile)
        raise
    _fsync(out.parent)
    if had_old:
        _remove(old)  # step 3
    return out


@contextmanager
def atomic_directory(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp folder beside `out`; when the block ends without error, give its entries plain modes, flush
    them to disk and replace `out` with it (`replace_directory`). On error the temp folder is removed and `out`
    is untouched. A crash at any point leaves `out` complete, old or new, once `recover_directory` has run
    (this function runs it first)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(out)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_dir_prefix(out), suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        normalise_modes(tmp)  # mkdtemp/safetensors make 0700/0600 entries: give the modes a plain mkdir/open would
        for path in [*tmp.rglob("*"), tmp]:  # the files, then the folders that name them
            if not path.is_symlink():
                _fsync(path)
        replace_directory(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return atomic_write_text(path, text)


class JsonlAppender:
    """Appends one JSON object per line, durable after each `write` (for resumable jobs).

    On opening an existing regular file, a last line without its newline is repaired, never lost: a
    complete JSON object (a row whose newline was not written yet) gets its newline; anything else (a
    row cut off by a kill mid-write) is dropped. Pipes and character devices (`/dev/stdout`) are only
    appended to - never read, truncated or fsync'd.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._regular = not self.path.exists() or self.path.is_file()
        if self._regular:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():
                _repair_last_line(self.path)
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, row: dict, sync: bool = True) -> None:
        """Append `row`. It reaches the OS at once (a killed process loses nothing); `sync=False` leaves the
        fsync to a later `sync()`, so a job writing many rows per batch pays one disk flush per batch, and a
        power cut loses at most the rows since then (which a resumed job redoes)."""
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._f.flush()
        if sync:
            self.sync()

    def sync(self) -> None:
        """fsync what was written (regular files only)."""
        if self._regular:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_json_object(raw: bytes | str) -> dict | None:
    """One JSONL line as a dict, or None when it is not one (not UTF-8, not JSON, not a JSON object)."""
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def _is_json_object(raw: bytes) -> bool:
    return parse_json_object(raw) is not None


def _repair_last_line(path: Path) -> None:
    """Finish or drop an unterminated last line (see JsonlAppender); a file ending in a newline is untouched."""
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        # Read back only as far as the previous newline: the file may be large.
        pos, tail = size, b""
        while pos > 0 and b"\n" not in tail:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            tail = f.read(step) + tail
        cut = pos + tail.rfind(b"\n") + 1  # 0 when the file is one unterminated line
        if _is_json_object(tail[cut - pos :]):
            f.seek(size)
            f.write(b"\n")
        else:
            f.truncate(cut)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl_objects_lenient(lines: str | os.PathLike | Iterable[bytes]) -> list[dict]:
    """The JSON objects of a JSONL file (a path) or of its lines, every other line left out: for files only
    vlgen writes, where such a line is one a kill cut off (see `read_jsonl_objects` for user input)."""
    if isinstance(lines, (str, os.PathLike)):
        lines = Path(lines).read_bytes().split(b"\n")
    return [obj for raw in lines if (obj := parse_json_object(raw)) is not None]


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

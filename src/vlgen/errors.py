"""User-facing errors.

Every error a user can cause (bad file, bad option, missing model) is a `VlgenError`: the CLI prints its
message as one line and exits with `exit_code`, never a traceback. Anything else is a bug and keeps its
traceback. This module imports nothing, so every layer (data/ included) may use it.
"""

from __future__ import annotations


class VlgenError(Exception):
    """Base class: the message is complete and actionable on its own (names the file/field/value)."""

    exit_code: int = 1


class ConfigError(VlgenError, ValueError):
    """A config file or option has an unknown key or an invalid value."""


class ModelNotAvailableError(VlgenError):
    """A model reference is neither a local directory nor obtainable from the hub right now."""


class DataError(VlgenError, ValueError):
    """A dataset, metadata file or record is malformed. `path`/`line` locate it when known."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
        self.reason = message


class ImageLoadError(DataError):
    """An image file is missing, unreadable, truncated, not an image, or too large to decode safely."""

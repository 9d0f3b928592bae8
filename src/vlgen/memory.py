"""Giving freed memory back to the operating system, for long-lived processes that work in phases.

glibc's malloc keeps freed heap pages for reuse, so a process that once held 3 GB (a LoRA run's caching
phase, a server request that decoded 16 large images) keeps that resident set although Python and PIL have
freed it; the next phase then stacks on top of the last one's high-water mark. `release_memory()` collects
garbage and asks glibc to hand free pages back (`malloc_trim`). It costs a full `gc.collect()` (tens of ms
in a process with a model loaded), so call it after a phase, not per item.
"""

from __future__ import annotations

import contextlib
import gc
import sys


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc's malloc keeps them otherwise), so
    that what comes next - the steps after the caches, the outputs after the steps, the next request -
    starts from a lower resident set instead of stacking on top of the last phase's high-water mark."""
    gc.collect()
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):  # musl and other libcs have no malloc_trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)

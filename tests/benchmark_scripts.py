"""Importing the scripts under benchmarks/ in tests. They are scripts, not a package: the folder is on sys.path only
while one is imported (a script that imports its siblings puts it there itself)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def import_benchmark(name: str) -> ModuleType:
    """benchmarks/{name}.py as a module (imported once per process, like any module)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))

"""Tiny vision-language checkpoints shared by the captioning tests (built once per session, read-only)."""

from __future__ import annotations

import pytest

from vlgen.testing import build_tiny


@pytest.fixture(scope="session")
def florence_dir(tmp_path_factory):
    return build_tiny("florence-2", tmp_path_factory.mktemp("florence-2") / "florence-2")


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory):
    return build_tiny("qwen2-vl", tmp_path_factory.mktemp("qwen2-vl") / "qwen2-vl")

"""requirements.lock (what `make` installs) agrees with pyproject.toml and leaves the torch family out."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# Left to TORCH_SPEC or the user's CUDA build (Makefile): pinning them would make pip replace that build.
TORCH_FAMILY = re.compile(r"^(torch|torchvision|triton|nvidia-.*|cuda-.*)$")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)(?:\s*;\s*(.+))?$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, list[tuple[str, str | None]]]:
    pins: dict[str, list[tuple[str, str | None]]] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        m = PIN.match(line.strip())
        if m:
            pins.setdefault(_norm(m[1]), []).append((m[2], m[3]))
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def test_lock_leaves_out_torch_and_cuda_packages():
    pins = _pins()
    assert len(pins) > 50  # the file was read
    assert not [name for name in pins if TORCH_FAMILY.match(name)]


def test_every_dependency_is_pinned_within_its_pyproject_range():
    pins = _pins()
    for req in _requirements():
        name = _norm(req.name)
        if TORCH_FAMILY.match(name):
            continue
        assert name in pins, f"{req.name} is in pyproject.toml but not in requirements.lock: run `make lock`"
        for version, _marker in pins[name]:
            assert req.specifier.contains(version, prereleases=True), f"{req.name}=={version} outside {req}"


def test_makefile_installs_from_the_lock_and_rebuilds_when_it_changes():
    makefile = (ROOT / "Makefile").read_text()
    stamp_rule = next(line for line in makefile.splitlines() if line.startswith("$(STAMP):"))
    assert "$(LOCK)" in stamp_rule and "LOCK := requirements.lock" in makefile
    assert "-r $(LOCK)" in makefile
    for target in ("lock:", "test-latest:"):
        assert any(line.startswith(target) for line in makefile.splitlines()), target

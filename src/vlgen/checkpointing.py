"""Training checkpoints that resume exactly: weights, optimiser, scheduler, RNG streams and loop position.

Layout of `OUT/checkpoints/checkpoint-STEP/`:
  model.safetensors   trainable state of the unwrapped model (safetensors handles tied weights)
  optimizer.pt        optimizer.state_dict(), read back with torch.load(weights_only=True)
  scheduler.pt        scheduler.state_dict(), same
  rng.json            python `random` and numpy states; torch CPU/CUDA states in rng.safetensors
  rng_rank{r}.json    the same for process r > 0 of a multi-process run (+ rng_rank{r}.safetensors): each
                      process resumes its own streams (dropout masks differ between processes)
  trainer_state.json  global step, epoch, batch position, best metric, history
A checkpoint is assembled in a temp folder and renamed into place (`fileio.atomic_directory`), so a run killed
mid-write never leaves a half checkpoint that `--resume-from-checkpoint latest` would pick up.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlgen.errors import ConfigError
from vlgen.fileio import atomic_directory

_CKPT = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    if not ckpt_root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_root.iterdir() if p.is_dir() and (m := _CKPT.match(p.name))]
    return [p for _, p in sorted(found)]


def resolve_resume(ref: str, ckpt_root: Path) -> Path | None:
    """`latest` -> the newest complete checkpoint (None if there is none yet); otherwise a path."""
    if ref == "latest":
        ckpts = list_checkpoints(ckpt_root)
        return ckpts[-1] if ckpts else None
    path = Path(ref)
    if not (path / "trainer_state.json").is_file():
        raise ConfigError(f"--resume-from-checkpoint {ref}: not a checkpoint directory (no trainer_state.json)")
    return path


# ------------------------------------------------------------------------------------------ output folders
def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _same(key: str, saved: Any, now: Any, path_keys: frozenset[str]) -> bool:
    if key in path_keys and isinstance(saved, str) and isinstance(now, str) and saved and now:
        # the same folder written two ways (relative / absolute) is the same input
        return saved == now or Path(saved).expanduser().resolve() == Path(now).expanduser().resolve()
    return _plain(saved) == _plain(now)


def config_differences(
    saved: dict[str, Any], now: dict[str, Any], may_differ: frozenset[str], path_keys: frozenset[str] = frozenset()
) -> list[str]:
    """`key: saved -> now` for every key outside `may_differ` whose value changed (keys added since count)."""
    diffs = []
    for key in now:
        if key in may_differ or key not in saved and now[key] is None:
            continue
        if key not in saved or not _same(key, saved[key], now[key], path_keys):
            diffs.append(f"{key}: {saved.get(key, '<not set>')!r} -> {now[key]!r}")
    return diffs


def prepare_output_dir(
    out: Path,
    *,
    option: str,
    resume: str | None,
    overwrite: bool,
    config: dict[str, Any],
    may_differ: frozenset[str],
    path_keys: frozenset[str] = frozenset(),
    clear: bool = True,
) -> None:
    """Refuse to mix a new run into a folder that holds another one; check a resume continues the same run.

    * `out` missing or empty: fine.
    * `overwrite` (--overwrite-output-dir): the folder is emptied (when `clear`: the main process) - only if it
      holds a vlgen run (its config.yaml), so a mistyped --out never wipes unrelated files.
    * `resume` (--resume-from-checkpoint): the saved config.yaml of the run being resumed must equal `config`
      except for `may_differ`; ConfigError names every key that differs.
    * otherwise a non-empty folder is refused in one line naming both options.
    """
    import yaml

    if overwrite and resume:
        raise ConfigError(
            "--overwrite-output-dir clears the folder and --resume-from-checkpoint continues it: pass one of them"
        )
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{option} {out}: is a file, but a folder is needed here; remove it or choose another path")
    contents = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    saved_cfg = out / "config.yaml"
    if overwrite:
        if contents and not saved_cfg.is_file():
            raise ConfigError(
                f"{option} {out} is not empty and holds no vlgen run (no config.yaml); --overwrite-output-dir "
                "only clears a run's folder: choose an empty or new folder"
            )
        if contents and clear:
            for p in out.iterdir():
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
        return
    if resume:
        if resume != "latest":  # a checkpoint of another folder: compare with the run it belongs to
            saved_cfg = Path(resume).parent.parent / "config.yaml"
        if not saved_cfg.is_file():
            return
        try:
            saved = yaml.safe_load(saved_cfg.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{saved_cfg}: cannot read the resumed run's config ({e})") from None
        diffs = config_differences(saved, config, may_differ, path_keys)
        if diffs:
            raise ConfigError(
                f"--resume-from-checkpoint {resume}: this run's options differ from the run being resumed "
                f"({saved_cfg}): {'; '.join(diffs)}. Resume with the same options, or start afresh with "
                "--overwrite-output-dir (or another output folder)"
            )
        return
    if contents:
        shown = ", ".join(contents[:4]) + (", ..." if len(contents) > 4 else "")
        raise ConfigError(
            f"{option} {out} already holds another run ({shown}); pass --overwrite-output-dir to clear it and "
            "start afresh, --resume-from-checkpoint latest to continue it, or choose another folder"
        )


def rng_state() -> tuple[dict, dict[str, torch.Tensor]]:
    """This process's python, numpy and torch RNG states, as (json-able dict, tensors)."""
    np_state = np.random.get_state()
    py = random.getstate()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    return meta, tensors


def _set_rng_state(meta: dict, tensors: dict[str, torch.Tensor]) -> None:
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = meta["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(
    ckpt_root: Path,
    step: int,
    model: torch.nn.Module,
    optimizer,
    scheduler,
    state: dict[str, Any],
    rng_states: list[tuple[dict, dict[str, torch.Tensor]]] | None = None,
) -> Path:
    """Write checkpoint-STEP atomically. `rng_states`: every process's `rng_state()`, rank order (default: this
    process's only)."""
    from safetensors.torch import save_file, save_model

    final = ckpt_root / f"checkpoint-{step}"
    with atomic_directory(final) as tmp:  # a crash leaves no half checkpoint for `latest` to pick up
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        for rank, (meta, tensors) in enumerate(rng_states or [rng_state()]):
            stem = "rng" if rank == 0 else f"rng_rank{rank}"
            (tmp / f"{stem}.json").write_text(json.dumps(meta))
            save_file(tensors, str(tmp / f"{stem}.safetensors"))
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
    return final


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler, rank: int = 0) -> dict[str, Any]:
    """Restore everything `save_checkpoint` wrote; returns the trainer state. Process `rank` takes its own RNG
    streams (rank 0's where the checkpoint has none for it: one written by fewer processes)."""
    from safetensors.torch import load_file, load_model

    load_model(model, str(path / "model.safetensors"), strict=True)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", map_location="cpu", weights_only=True))
    stem = f"rng_rank{rank}" if rank and (path / f"rng_rank{rank}.json").is_file() else "rng"
    _set_rng_state(json.loads((path / f"{stem}.json").read_text()), load_file(str(path / f"{stem}.safetensors")))
    return json.loads((path / "trainer_state.json").read_text())


def rotate_checkpoints(ckpt_root: Path, total_limit: int | None) -> None:
    """Keep the newest `total_limit` checkpoints (None keeps all)."""
    if total_limit is None or total_limit <= 0:
        return
    for old in list_checkpoints(ckpt_root)[:-total_limit]:
        shutil.rmtree(old, ignore_errors=True)

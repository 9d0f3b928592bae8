"""The resumable training loop of `vlgen train caption` and `vlgen train lora`.

A trainer describes its task with a `TrainingTask` (how an epoch is cut into batches, how a batch is built,
the loss of a micro-batch, what happens after a step and at the end of an epoch) and hands the loop its
model(s), optimiser and schedule. The loop owns the rest, written once:

- data: epoch e is a list of global batches (sample indices) the task cuts, seeded by (seed, e). Process r of
  N takes `batch[r::N]` of each (one sample of it when a last, short batch has fewer than N). The shards are
  built by `TrainingTask.collate` in `num_workers` DataLoader worker processes (image decoding off the
  training thread), each seeded by (seed, epoch, batch) - not by worker - so which worker builds a batch, and
  where a resumed run starts, change nothing. accelerate places the batches on the device.
- steps: `accelerator.accumulate` over `gradient_accumulation_steps` micro-batches (the last, short group of
  an epoch steps too); a step is one optimiser update.
- resume: checkpoint-STEP/ holds weights, optimiser, schedule, every process's RNG streams and the position
  in the epoch (vlgen.checkpointing); a run killed with SIGKILL and resumed ends with the same weights, bit
  for bit on CPU, as one never interrupted, on one process or several. `checkpoints_total_limit` keeps the
  newest. Under DeepSpeed ZeRO a process holds only its shard of the optimiser, which these checkpoints do
  not gather: resuming is refused in one line and no checkpoints are written (training is unchanged).
- history: one row per step (step, epoch, train_loss, lr) plus what the task adds (validation rows), written
  by `write_history`.
- early stopping: the task's end-of-epoch decision (rank 0 validates) is all-reduced, so every process stops
  at the same step instead of waiting in the next gradient all-reduce.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlgen.checkpointing import load_checkpoint, resolve_resume, rng_state, rotate_checkpoints, save_checkpoint
from vlgen.errors import ConfigError
from vlgen.fileio import atomic_write_text


def make_accelerator(
    *,
    cpu: bool,
    mixed_precision: str,
    gradient_accumulation_steps: int,
    project_dir: str | Path,
    log_with: str | None = None,
    find_unused_parameters: bool = False,
):
    """The Accelerator of a training run. Without CUDA it is asked for the CPU: only then does it see a CPU
    launch of several processes (`torchrun --nproc_per_node 2`, gloo); otherwise each process would train alone.

    `find_unused_parameters`: DDP's option, for models with trainable parameters a forward may not use (the
    pooler of a ViT encoder in ViT-GPT2); as transformers' Trainer, leave it off with gradient checkpointing."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    return Accelerator(
        cpu=cpu or not torch.cuda.is_available(),
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=gradient_accumulation_steps,
        log_with=log_with,
        project_dir=str(project_dir),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)],
    )


def open_run(accelerator, cfg: Any, out: Path, *, option: str, may_differ: frozenset[str], path_keys: frozenset[str]):
    """Before anything is written: a new run never mixes into another one's folder, a resume continues the same
    run (the saved config.yaml must equal `cfg` but for `may_differ`; vlgen.checkpointing.prepare_output_dir).
    Rank 0 clears the folder for --overwrite-output-dir; the others wait for it. Returns whether `out` held this
    run before (a resume: a fresh run with --resume-from-checkpoint latest has nothing to say about checkpoints)."""
    from vlgen.checkpointing import prepare_output_dir
    from vlgen.config import config_to_dict

    check_resume_possible(accelerator, cfg.resume_from_checkpoint)
    prepare_output_dir(
        out,
        option=option,
        resume=cfg.resume_from_checkpoint,
        overwrite=cfg.overwrite_output_dir,
        config=config_to_dict(cfg),
        may_differ=may_differ,
        path_keys=path_keys,
        clear=accelerator.is_main_process,
    )
    continues = (out / "config.yaml").is_file()
    accelerator.wait_for_everyone()
    return continues


def save_run_config(accelerator, cfg: Any, out: Path) -> None:
    """OUT/config.yaml (rank 0), without --overwrite-output-dir: rerunning from it must not clear the run."""
    if accelerator.is_main_process:
        import dataclasses

        from vlgen.config import save_config

        save_config(dataclasses.replace(cfg, overwrite_output_dir=False), out)


def main_process_log(accelerator) -> Callable[[str], None]:
    """A `log(msg)` that prints rich markup on stderr from rank 0 only."""

    def log(msg: str) -> None:
        if accelerator.is_main_process:
            from rich.console import Console

            Console(stderr=True, highlight=False, soft_wrap=True).print(msg)

    return log


def zero_stage(accelerator) -> int:
    """The DeepSpeed ZeRO stage of the run (0: no DeepSpeed, or DeepSpeed without partitioning)."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return int(getattr(plugin, "zero_stage", 0) or 0) if plugin is not None else 0


def check_resume_possible(accelerator, resume_from_checkpoint: str | None) -> None:
    """Under DeepSpeed ZeRO a process holds only its shard of the optimiser state, which vlgen's checkpoints
    do not gather (accelerate's `save_state` would): resuming is refused in one line, before any model loads."""
    stage = zero_stage(accelerator)
    if stage and resume_from_checkpoint:
        raise ConfigError(
            f"--resume-from-checkpoint is not supported under DeepSpeed ZeRO stage {stage}: its checkpoints "
            "would hold one process's optimiser shard; train without DeepSpeed to resume"
        )


def shard(batch: Sequence[int], rank: int, world: int) -> list[int]:
    """Process `rank`'s part of a global batch: every world-th sample; a batch shorter than `world` gives the
    processes without one its first sample, so that every process takes part in each gradient all-reduce."""
    return list(batch[rank::world]) or list(batch[:1])


def write_history(out: Path, history: list[dict], title: str | None = None) -> None:
    """OUT/history.csv (one column per key any row has, first-seen order) and OUT/curves.png."""
    if not history:
        return
    keys = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\r\n")
    w.writeheader()
    w.writerows(history)
    atomic_write_text(out / "history.csv", buf.getvalue())
    from vlgen.report.curves import plot_learning_curves

    plot_learning_curves(history, out / "curves.png", **({"title": title} if title else {}))


@dataclass
class LoopSettings:
    """What the loop needs of a trainer's config (the fields have the CLI options' names)."""

    seed: int
    gradient_accumulation_steps: int
    max_grad_norm: float | None
    checkpointing_steps: int | None  # None: a checkpoint at the end of every epoch
    checkpoints_total_limit: int | None
    resume_from_checkpoint: str | None
    num_workers: int = 0


class TrainingTask:
    """What a trainer supplies. Only `epoch_batches`, `collate` and `loss` are required."""

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The global batches of epoch `epoch` (0-based): sample indices, seeded by (seed, epoch)."""
        raise NotImplementedError

    def collate(self, ids: list[int], epoch: int, b: int) -> Any:
        """This process's micro-batch from sample indices `ids` (runs in a DataLoader worker when
        --num-workers > 0: it must not touch the model's parameters or CUDA)."""
        raise NotImplementedError

    def loss(self, batch: Any, epoch: int, b: int) -> torch.Tensor:
        """The (unscaled) loss of one micro-batch; the loop divides by the accumulation steps."""
        raise NotImplementedError

    def check_loss(self, value: float, state: dict[str, Any], epoch: int, b: int) -> None:
        """Raise when a loss value means the run cannot go on (e.g. not finite)."""

    def clip_grad_norm(self, params: list[torch.nn.Parameter], max_norm: float) -> None:
        """Clip the gradients (default: accelerate's clip_grad_norm_)."""
        self.accelerator.clip_grad_norm_(params, max_norm)

    def after_step(self, step: int, row: dict[str, Any], state: dict[str, Any]) -> None:
        """After each optimiser step, on every process (its history row is already in state['history'])."""

    def end_of_epoch(self, epoch: int, state: dict[str, Any]) -> bool:
        """After the last step of an epoch, on every process: validate (rank 0), return True to stop early.
        The processes' answers are all-reduced: one that says stop stops all."""
        return False

    accelerator: Any = None  # set by TrainingLoop


def _identity(x: Any) -> Any:
    return x


class _EpochBatches(torch.utils.data.Dataset):
    """Item k: this process's micro-batch of global batch `start + k` of one epoch, built by the task."""

    def __init__(
        self, task: TrainingTask, batches: list[list[int]], *, seed: int, epoch: int, start: int, rank: int, world: int
    ):
        self.task, self.batches, self.seed, self.epoch, self.start = task, batches, seed, epoch, start
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return len(self.batches) - self.start

    def __getitem__(self, k: int) -> Any:
        b = self.start + k
        ids = shard(self.batches[b], self.rank, self.world)
        # Seeded by where the batch is in training, so that random augmentations are the same whichever
        # worker builds it. In the training process (no workers) the global streams are put back afterwards:
        # they belong to the model (dropout) and to the checkpoint.
        item_seed = ((self.seed * 1_000_003 + self.epoch) * 1_000_003 + b) % 2**32
        in_worker = torch.utils.data.get_worker_info() is not None
        with contextlib.ExitStack() as stack:
            if not in_worker:
                stack.enter_context(torch.random.fork_rng(devices=[]))
                py, np_state = random.getstate(), np.random.get_state()
                stack.callback(lambda: (random.setstate(py), np.random.set_state(np_state)))
            torch.manual_seed(item_seed)
            random.seed(item_seed)
            np.random.seed(item_seed)
            return self.task.collate(ids, self.epoch, b)


class TrainingLoop:
    """One run of the loop. `checkpoint_module` holds the trainable state a checkpoint saves (the unwrapped
    model, or a module of just the adapters); `models` are the prepared models gradients accumulate in."""

    def __init__(
        self,
        accelerator,
        settings: LoopSettings,
        *,
        ckpt_root: Path,
        models: Sequence[torch.nn.Module],
        checkpoint_module: torch.nn.Module,
        params: list[torch.nn.Parameter],
        optimizer,
        scheduler,
        total_steps: int,
        steps_per_epoch: int,
        log: Callable[[str], None],
    ) -> None:
        self.acc, self.settings = accelerator, settings
        self.ckpt_root = ckpt_root
        self.models, self.checkpoint_module, self.params = list(models), checkpoint_module, params
        self.optimizer, self.scheduler = optimizer, scheduler
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.epochs = math.ceil(total_steps / steps_per_epoch)
        self.log = log
        self.checkpoints = True
        check_resume_possible(accelerator, settings.resume_from_checkpoint)
        stage = zero_stage(accelerator)
        if stage:
            self.checkpoints = False
            log(f"[yellow]DeepSpeed ZeRO stage {stage}: no resumable checkpoints are written in this run[/]")

    @staticmethod
    def new_state(**extra: Any) -> dict[str, Any]:
        return {"global_step": 0, "epoch": 0, "batch_in_epoch": 0, **extra, "history": []}

    # ------------------------------------------------------------------------------------------- resume
    def resume(self, state: dict[str, Any], continues_a_run: bool) -> dict[str, Any]:
        """The state to start from: `state` (a new run) or the checkpoint --resume-from-checkpoint names."""
        ref = self.settings.resume_from_checkpoint
        if not ref:
            return state
        ckpt = resolve_resume(ref, self.ckpt_root)
        if ckpt is None:
            if continues_a_run:
                self.log(f"no checkpoint in {self.ckpt_root} to resume from yet: starting from scratch")
            return state
        state = load_checkpoint(ckpt, self.checkpoint_module, self.optimizer, self.scheduler, self.acc.process_index)
        self.log(f"resumed from {ckpt} (step {state['global_step']}, epoch {state['epoch'] + 1})")
        if state["global_step"] >= self.total_steps:
            self.log(
                f"the checkpoint is at step {state['global_step']} of the {self.total_steps} steps asked for: "
                "nothing left to train (raise the epochs or --max-train-steps to train on)"
            )
        return state

    # ------------------------------------------------------------------------------------------- helpers
    def agree(self, flag: bool) -> bool:
        """True on every process when it is True on any (an all-reduce; no-op on one process)."""
        if self.acc.num_processes == 1:
            return flag
        t = torch.tensor([1 if flag else 0], device=self.acc.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def _mean_over_processes(self, value: float) -> float:
        """The step's loss over the whole global batch, not only this process's shard."""
        if self.acc.num_processes == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.acc.device)
        torch.distributed.all_reduce(t)
        return float(t.item() / self.acc.num_processes)

    def checkpoint(self, step: int, state: dict[str, Any]) -> None:
        """Every process's RNG streams to rank 0, which writes checkpoint-STEP and drops the oldest."""
        if not self.checkpoints:
            return
        states = [rng_state()]
        if self.acc.num_processes > 1:
            states = [None] * self.acc.num_processes
            torch.distributed.all_gather_object(states, rng_state())
        if self.acc.is_main_process:
            save_checkpoint(self.ckpt_root, step, self.checkpoint_module, self.optimizer, self.scheduler, state, states)
            rotate_checkpoints(self.ckpt_root, self.settings.checkpoints_total_limit)

    def _loader(self, task: TrainingTask, batches: list[list[int]], epoch: int, start: int):
        from accelerate.data_loader import prepare_data_loader

        acc = self.acc
        dataset = _EpochBatches(
            task, batches, seed=self.settings.seed, epoch=epoch, start=start, rank=acc.process_index,
            world=acc.num_processes,
        )  # fmt: skip
        # A generator of its own: a DataLoader draws its workers' base seed when iterated, from the global
        # stream otherwise - one draw more in a resumed run (its mid-epoch loader) than in an uninterrupted one.
        g = torch.Generator().manual_seed(self.settings.seed * 1_000_003 + epoch)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=None,
            shuffle=False,
            num_workers=self.settings.num_workers,
            collate_fn=_identity,
            generator=g,
            pin_memory=acc.device.type == "cuda",  # page-locked batches: faster copies to the GPU
        )
        # The shards are this process's already (see `shard`): accelerate only moves them to the device and
        # tells `accumulate` where the epoch ends, so the last, short group of micro-batches steps too.
        return prepare_data_loader(loader, acc.device, num_processes=1, process_index=0, put_on_device=True)

    # ------------------------------------------------------------------------------------------- the loop
    def run(self, task: TrainingTask, state: dict[str, Any]) -> dict[str, Any]:
        """Train from `state` to `total_steps` (or an agreed early stop); returns the final state."""
        from vlgen.progress import make_progress

        acc = self.acc
        task.accelerator = acc
        for m in self.models:
            m.train()
        done = state["global_step"] >= self.total_steps
        with make_progress() as progress:
            bar = progress.add_task("training", total=self.total_steps, completed=state["global_step"])
            epoch = state["epoch"]
            while not done and epoch < self.epochs:
                batches = task.epoch_batches(epoch)
                start = state["batch_in_epoch"] if epoch == state["epoch"] else 0
                done = self._epoch(task, state, batches, epoch, start, progress, bar)
                if not done:
                    state["epoch"], state["batch_in_epoch"] = epoch + 1, 0
                epoch += 1
        return state

    def _epoch(self, task, state, batches, epoch, start, progress, bar) -> bool:
        """Steps of one epoch from global batch `start`; True when training is over."""
        acc, s = self.acc, self.settings
        if start >= len(batches):
            return False
        loader = self._loader(task, batches, epoch, start)
        running: list[float] = []
        finished = False
        try:
            for b, batch in enumerate(loader, start):
                with acc.accumulate(*self.models), acc.autocast():
                    loss = task.loss(batch, epoch, b)
                    acc.backward(loss)  # divided by gradient_accumulation_steps there
                value = loss.item()
                task.check_loss(value, state, epoch, b)
                running.append(value)
                last_micro = (b + 1) % s.gradient_accumulation_steps == 0 or b + 1 == len(batches)
                if acc.sync_gradients != last_micro:  # accelerate's count and ours must agree, or resume is off
                    raise RuntimeError(f"gradient accumulation out of step at epoch {epoch}, batch {b}")
                if not acc.sync_gradients:
                    continue
                if s.max_grad_norm:
                    task.clip_grad_norm(self.params, s.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                state["global_step"] += 1
                state["epoch"], state["batch_in_epoch"] = epoch, b + 1
                step = state["global_step"]
                row = {
                    "step": step,
                    "epoch": epoch + (b + 1) / len(batches),
                    "train_loss": self._mean_over_processes(sum(running) / len(running)),
                    "lr": self.scheduler.get_last_lr()[0],
                }
                running = []
                state["history"].append(row)
                task.after_step(step, row, state)
                progress.update(
                    bar, advance=1, description=f"epoch {epoch + 1}/{self.epochs} loss {row['train_loss']:.4f}"
                )
                end_of_epoch = b + 1 == len(batches)
                stop = self.agree(task.end_of_epoch(epoch, state)) if end_of_epoch else False
                if (s.checkpointing_steps and step % s.checkpointing_steps == 0) or (
                    s.checkpointing_steps is None and end_of_epoch
                ):
                    self.checkpoint(step, state)
                if step >= self.total_steps or stop:
                    return True
            finished = True
        finally:
            if not finished:  # left early: the loader never reached its end, which unregisters it from accelerate
                with contextlib.suppress(ValueError):
                    loader.end()
        return False


__all__ = [
    "LoopSettings",
    "TrainingLoop",
    "TrainingTask",
    "check_resume_possible",
    "main_process_log",
    "make_accelerator",
    "open_run",
    "save_run_config",
    "shard",
    "write_history",
    "zero_stage",
]

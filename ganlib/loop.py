"""The loop around `Trainer.train_step` (`train.py`): steps until the run's end, the log every `cfg.log_every`
steps, the caller's callback, checkpoints and sample grids in the run folder, the progress bar.

Everything the loop does to a trainer goes through its methods (`train_step`, `flush_stats`, `save_checkpoint`,
`sample`), so a chapter's trainer changes the loop by changing those.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from . import viz

__all__ = ["train", "write_samples", "grid_labels"]


def train(trainer, steps: int | None = None, callback: Callable | None = None, every: int | None = None,
          progress: bool = True):
    """Train `trainer` (a `train.Trainer`) until its `step` reaches `steps` (default cfg.steps); call
    `callback(trainer)` every `every` steps and at the end. Returns the trainer.

    Checkpoints (every cfg.checkpoint_every steps and at the end) and sample grids (every cfg.sample_every
    steps and at the end) go to `trainer.run_dir`. With several processes, every process must call this; the
    callback, the sample grids and the progress bar run in process 0 only.
    """
    from tqdm.auto import tqdm

    cfg, steps = trainer.cfg, (trainer.cfg.steps if steps is None else steps)
    bar = tqdm(total=steps, initial=trainer.step, disable=not (progress and trainer.is_main), dynamic_ncols=True,
               leave=False)
    start = time.perf_counter() - trainer.elapsed
    threads = torch.get_num_threads()
    if cfg.threads and trainer.device.type == "cpu":  # the run's own count (a tiny step only waits on more)
        torch.set_num_threads(cfg.threads)
    try:
        while trainer.step < steps:
            trainer.train_step()
            trainer.elapsed = time.perf_counter() - start
            bar.update(1)
            at_end = trainer.step == steps
            if trainer.step % cfg.log_every == 0 or at_end:
                entry = trainer.flush_stats()
                bar.set_postfix({k: f"{v:.3g}" for k, v in entry.items() if k.startswith("loss")}, refresh=False)
            if callback and trainer.is_main and ((every and trainer.step % every == 0) or at_end):
                callback(trainer)
            if trainer.run_dir is not None:  # the checkpoint first: a grid on disk implies its step's checkpoint
                if at_end or (cfg.checkpoint_every and trainer.step % cfg.checkpoint_every == 0):
                    trainer.save_checkpoint()
                if trainer.is_main and (at_end or (cfg.sample_every and trainer.step % cfg.sample_every == 0)):
                    write_samples(trainer)
            start = time.perf_counter() - trainer.elapsed  # callbacks and I/O do not count as training time
    finally:
        bar.close()
        torch.set_num_threads(threads)
    return trainer


def write_samples(trainer) -> Path:
    """Write a grid of 64 samples of `trainer` (fixed latents, so grids are comparable over time) to
    run_dir/samples/step0000123.png; returns its path."""
    labels = grid_labels(trainer.G, 64) if trainer.conditional else None
    x, labels = trainer.sample(64, seed=trainer.cfg.seed + 12345, labels=labels)
    path = trainer.run_dir / "samples" / f"step{trainer.step:07d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    if x.ndim == 4:
        viz.save_image_grid(x, path, nrow=8)
    else:
        viz.save_points(x, path, reference=trainer.data)
    return path


def grid_labels(G, n: int) -> torch.Tensor:
    """Labels [n] for a sample grid of a class-conditional G: each row of 8 one class (0, 1, 2, ... cycling)."""
    return (torch.arange(n) // 8) % G.num_classes

"""Several processes: torchrun with 1 and 2 processes on the CPU (gloo), and accumulation on one."""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

from .. import recipes


def _torchrun_images_per_second(folder: Path, processes: int, steps: int, accumulate: int = 1) -> float:
    """Train the dcgan cpu preset with `python -m torch.distributed.run`; images/s over all processes."""
    import shutil
    import subprocess

    from ganlib.checkpoints import load_checkpoint_file

    shutil.rmtree(folder, ignore_errors=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "gancourse", "train", "dcgan", "--profile", "cpu", "--device", "cpu", "--steps", str(steps),
               "--accumulate", str(accumulate), "--out", str(folder)]
    env = dict(os.environ, OMP_NUM_THREADS="1")  # one thread per process
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    state = load_checkpoint_file(folder)
    return state["images_seen"] / state["elapsed"]


TITLE = "Several processes: torchrun on the CPU with 1 and 2 processes"
ACCUMULATION_GAIN = 1.1  # below this ratio to 1 process, accumulating is reported as no faster (within the spread)
SETUPS = [("1 process", 1, 1), ("2 processes (torchrun, gloo)", 2, 1), ("1 process, --accumulate 2", 1, 2)]
# (name, processes, micro-batches accumulated per step)


def measure(quick: bool = False) -> dict:
    """Each of `SETUPS` trained `repeats` times, interleaved: images/s of each run, the machine's load average
    before and after, and the preset's batch per process."""
    import tempfile

    steps, repeats = (10, 1) if quick else (300, 2)
    load_before = os.getloadavg()[0]
    runs: dict[str, list[float]] = {name: [] for name, _, _ in SETUPS}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):  # interleaved, so that drifts in machine load hit all alike
            for name, processes, accumulate in SETUPS:
                runs[name].append(_torchrun_images_per_second(Path(tmp) / "run", processes, steps, accumulate))
    return {"steps": steps, "repeats": repeats, "load_before": load_before, "load_after": os.getloadavg()[0],
            "batch": recipes.preset("dcgan", "cpu")["train"]["batch_size"],
            "setups": [{"name": name, "processes": processes, "accumulate": accumulate, "runs": runs[name]}
                       for name, processes, accumulate in SETUPS]}


def report(measured: dict) -> str:
    setups, batch, steps, repeats = (measured[k] for k in ("setups", "batch", "steps", "repeats"))
    median = [statistics.median(s["runs"]) for s in setups]
    rows = [f"| {s['name']} | {batch} | {batch * s['processes'] * s['accumulate']} | {m:.0f} | {m / median[0]:.2f} "
            f"| {_join(s['runs'])} |" for s, m in zip(setups, median)]
    return f"""`python -m torch.distributed.run --standalone --nproc_per_node=N -m gancourse train dcgan --profile cpu
--device cpu --steps {steps} [--accumulate 2]` (the `dcgan` cpu preset: digits 16x16, EMA, lazy R1), one CPU
thread per process (OMP_NUM_THREADS=1), processes talking through gloo; images per second over all processes, from the
checkpoint's images seen and training time (start-up, sample grids and checkpoints excluded); {repeats} run(s)
of each, interleaved, median. The machine's load average was {measured['load_before']:.1f} before and
{measured['load_after']:.1f} after (other work shares its cores, so compare the rows with each other rather than
with other sections). No GPU was available for this measurement: on GPUs the processes use NCCL, and these figures
say nothing about GPU scaling.

| setup | batch per process | global batch | images/s | ratio to 1 process | runs |
|---|---|---|---|---|---|
{chr(10).join(rows)}

Two processes deliver **{median[1] / median[0]:.2f}x** the images per second of one (2.00x
would be perfect scaling). Accumulating two micro-batches in one process trains with the global batch of two
processes at {median[2] / median[0]:.2f}x the images per second of one: {_accumulation_verdict(median)}."""


def _accumulation_verdict(median: list[float]) -> str:
    """What accumulation buys, from the medians of (1 process, 2 processes, 1 process accumulating 2)."""
    if median[2] / median[0] < ACCUMULATION_GAIN:
        return "it saves memory, not time"
    return (f"faster per image than one micro-batch per update (half as many updates for the same images), and "
            f"{median[1] / median[2]:.2f}x slower than two processes: it saves memory, and some time")


def _join(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)

"""Where the course runs: device, profile, seeds.

A profile is a compute budget. `GANLIB_PROFILE` selects it:

- ``smoke``: seconds per notebook, tiny models; what CI runs. Proves the code runs, not that it learns.
- ``cpu``:   minutes per chapter on a 2-core laptop, offline data.
- ``gpu``:   the real thing on a Colab T4 class GPU (downloaded datasets, larger resolutions).

Unset, the profile is ``gpu`` when CUDA is available and ``cpu`` otherwise.
"""

from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import GanlibError

__all__ = [
    "PROFILES", "current_profile", "default_device", "check_device", "seed_everything", "COLAB_WITHOUT_GPU",
    "on_colab", "Env", "format_profile_table", "MAX_THREADS", "physical_cores", "openmp_waits_passively",
    "default_threads", "set_threads", "setup"
]

PROFILES = ("smoke", "cpu", "gpu")


def current_profile() -> str:
    """The profile named by GANLIB_PROFILE, or the default for this machine."""
    name = os.environ.get("GANLIB_PROFILE", "").strip().lower()
    if not name:
        return "gpu" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise GanlibError(f"GANLIB_PROFILE={name!r} is not a profile: use one of {', '.join(PROFILES)}.")
    return name


def default_device(device: torch.device | str | None = None) -> torch.device:
    """`device` as a torch.device (checked: `check_device`); None: CUDA when it is available, else the CPU."""
    if device:
        return check_device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device(device: torch.device | str) -> torch.device:
    """`device` as a torch.device, or a GanlibError when it is not a device name or this machine lacks it."""
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise GanlibError(f"unknown device {str(device)!r}: use cpu, cuda, cuda:N (the N-th GPU) or mps.") from None
    if d.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise GanlibError(f"device {str(device)!r}: this machine has no CUDA GPU that torch can use: leave the "
                              f"device out (or use cpu) to run on the CPU, or install torch with CUDA on a machine "
                              f"with an NVIDIA GPU.")
        if d.index is not None and d.index >= count:
            raise GanlibError(f"device {str(device)!r}: this machine has {count} CUDA GPU(s), cuda:0 to "
                              f"cuda:{count - 1}.")
    elif d.type == "mps" and not torch.backends.mps.is_available():
        raise GanlibError(f"device {str(device)!r}: Apple's mps is not available on this machine: use cpu.")
    elif d.type not in ("cpu", "cuda", "mps"):
        raise GanlibError(f"device {str(device)!r}: ganlib runs on cpu, cuda or mps.")
    return d


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


COLAB_WITHOUT_GPU = ("This Colab runtime has no GPU, so the notebook runs the slower cpu profile: for the gpu profile "
                     "choose Runtime > Change runtime type > T4 GPU, then run the notebook again.")


def on_colab() -> bool:
    """Whether this runs in a Google Colab runtime."""
    import sys

    return "google.colab" in sys.modules


@dataclass(frozen=True)
class Env:
    """What `setup` decided: the device to use, the profile, the seed."""

    device: torch.device
    profile: str
    seed: int

    def run_folder(self, name: str, use_drive: bool = False) -> Path:
        """Where a notebook keeps a run's checkpoints and samples, so that it can resume after a restart.

        ``runs/<name>-<profile>`` beside the notebook; on Colab with `use_drive`, on your Google Drive (it
        survives the end of the Colab session); in the smoke profile, a fresh temporary folder, deleted when
        the process (the notebook's kernel) ends.
        """
        if self.profile == "smoke":
            import tempfile

            return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_smoke_runs()))
        if use_drive and on_colab():
            from google.colab import drive  # noqa: F401  (only exists on Colab)

            drive.mount("/content/drive")
            return Path("/content/drive/MyDrive/gan-course/runs") / f"{name}-{self.profile}"
        return Path("runs") / f"{name}-{self.profile}"

    def choose(self, table: dict[str, dict], show: bool = True) -> dict:
        """Pick this profile's column from a {profile: {name: value}} table and print the whole table.

        Every hyper-parameter a profile changes lives in one such table, so a reader sees at once what
        the smoke, cpu and gpu runs do differently.
        """
        missing = [p for p in PROFILES if p not in table]
        if missing:
            raise GanlibError(f"the profile table has no column for {', '.join(missing)}: add one per profile.")
        if show:
            print(format_profile_table(table, self.profile))
        return dict(table[self.profile])


_SMOKE_RUNS = []  # the TemporaryDirectory of this process's smoke-profile run folders, once made


def _smoke_runs() -> str:
    """Where the smoke profile's run folders go: $GANLIB_SMOKE_RUNS when set (the test session sets it for the
    notebook kernels it starts, and deletes it at its end: the kernels are killed, so they cannot clean up),
    else one temporary folder per process, deleted when the process exits (TemporaryDirectory's finaliser)."""
    import tempfile

    if os.environ.get("GANLIB_SMOKE_RUNS"):
        return os.environ["GANLIB_SMOKE_RUNS"]
    if not _SMOKE_RUNS:
        _SMOKE_RUNS.append(tempfile.TemporaryDirectory(prefix="ganlib-smoke-runs-"))
    return _SMOKE_RUNS[0].name


def format_profile_table(table: dict[str, dict], selected: str) -> str:
    """A plain-text table: one row per hyper-parameter, one column per profile, the selected one marked."""
    keys: list[str] = []
    for column in table.values():
        keys += [k for k in column if k not in keys]
    headers = ["", *[f"{p} *" if p == selected else p for p in PROFILES]]
    rows = [[k, *[_short(table[p].get(k, "-")) for p in PROFILES]] for k in keys]
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [headers, *rows]]
    return "\n".join(lines) + f"\n(* = the profile in use; set GANLIB_PROFILE to one of {', '.join(PROFILES)})"


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_short(v)}" for k, v in value.items()) + "}"
    return str(value)


MAX_THREADS = 4  # the course's models gain nothing from more CPU threads


def physical_cores() -> int:
    """The CPU cores this process may use, a core's hyper-threads counted once (read from /proc/cpuinfo where
    there is one; elsewhere every logical CPU counts)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_core = 1
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        info = {key.strip(): value for key, value in (line.split(":", 1) for line in lines if ":" in line)}
        per_core = max(1, int(info["siblings"]) // int(info["cpu cores"]))  # logical CPUs per core
    except (OSError, KeyError, ValueError, ZeroDivisionError):
        pass
    return max(1, usable // per_core)


def openmp_waits_passively() -> bool:
    """Whether torch's OpenMP threads sleep while they wait (OMP_WAIT_POLICY=PASSIVE when torch was imported,
    which ``import ganlib`` before ``import torch`` sees to), rather than spin and take the cores from any other
    program that runs."""
    import ganlib

    return ganlib.OPENMP_WAIT == "PASSIVE"


def default_threads() -> int:
    """OMP_NUM_THREADS when it is a positive number; else every physical core, at most `MAX_THREADS`, when
    OpenMP waits passively; else 1 (spinning threads make a step many times slower as soon as another program
    runs: docs/benchmarks.md, "CPU threads")."""
    explicit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    return min(MAX_THREADS, physical_cores()) if openmp_waits_passively() else 1


def set_threads(threads: int | None = None) -> str:
    """Have torch use `threads` CPU threads (None or 0: `default_threads()`); what was chosen, in words."""
    if threads is not None and threads < 0:
        raise GanlibError(f"threads={threads}: give a number of CPU threads, 1 or more (0: ganlib's default).")
    torch.set_num_threads(threads or default_threads())
    n = torch.get_num_threads()
    words = f"{n} CPU thread{'s' if n > 1 else ''}"
    if openmp_waits_passively():
        return f"{words}, OpenMP waiting passively"
    import ganlib

    if threads or n > 1:  # asked for: the user's choice
        return f"{words}, OpenMP spinning while it waits"
    why = "torch was imported before ganlib" if ganlib.TORCH_FIRST else f"OMP_WAIT_POLICY is {ganlib.OPENMP_WAIT}"
    return f"{words}: {why}, so more would spin against other programs; import ganlib first for more"


def setup(seed: int = 0, threads: int | None = None, quiet: bool = False) -> Env:
    """Seed everything, pick the device and profile, and print one line saying what was chosen (and, on a Colab
    runtime without a GPU, a second line saying how to get one).

    Args:
        seed: seed for Python, NumPy and PyTorch.
        threads: CPU threads for PyTorch; default (`default_threads`): OMP_NUM_THREADS when it is set (the test
            suite sets 1, so parallel test workers do not fight over the cores), else every physical core, at
            most 4, with OpenMP waiting passively; one when torch was imported before ganlib (OpenMP then
            spins). The 2-D toy models train with one (their preset's `threads`).
        quiet: do not print the summary line.
    """
    profile = current_profile()
    device = default_device()
    threads = set_threads(threads) if device.type == "cpu" else ""
    seed_everything(seed)
    env = Env(device=device, profile=profile, seed=seed)
    if not quiet:
        from . import __version__

        where = torch.cuda.get_device_name(device) if device.type == "cuda" else threads
        colab = ", Colab" if on_colab() else ""
        print(f"device {device} ({where}{colab}) | profile {profile} | seed {seed} | ganlib {__version__}, "
              f"torch {torch.__version__}, python {platform.python_version()}")
        if colab and device.type == "cpu":
            print(COLAB_WITHOUT_GPU)
    return env

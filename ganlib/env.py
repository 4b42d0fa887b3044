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
    "on_colab", "Env", "format_profile_table", "default_threads", "setup"
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


def default_threads() -> int:
    """OMP_NUM_THREADS when it is a positive number, else all cores, at most 4."""
    explicit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    return max(1, min(4, os.cpu_count() or 1))


def setup(seed: int = 0, threads: int | None = None, quiet: bool = False) -> Env:
    """Seed everything, pick the device and profile, and print one line saying what was chosen (and, on a Colab
    runtime without a GPU, a second line saying how to get one).

    Args:
        seed: seed for Python, NumPy and PyTorch.
        threads: CPU threads for PyTorch; default: OMP_NUM_THREADS when it is set (the test suite sets 1, so
            parallel test workers do not fight over the cores), else all cores, at most 4 (small models gain
            nothing beyond).
        quiet: do not print the summary line.
    """
    profile = current_profile()
    device = default_device()
    if device.type == "cpu":
        torch.set_num_threads(threads or default_threads())
    seed_everything(seed)
    env = Env(device=device, profile=profile, seed=seed)
    if not quiet:
        from . import __version__

        threads = f"{torch.get_num_threads()} CPU threads"
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else threads
        colab = ", Colab" if on_colab() else ""
        print(f"device {device} ({where}{colab}) | profile {profile} | seed {seed} | ganlib {__version__}, "
              f"torch {torch.__version__}, python {platform.python_version()}")
        if colab and device.type == "cpu":
            print(COLAB_WITHOUT_GPU)
    return env

"""What every benchmark shares: the thread count it runs with and the machine it ran on."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

THREADS = 2  # every benchmark runs with this many CPU threads (the course's reference laptop) ...


def threads() -> int:
    """... unless OMP_NUM_THREADS says otherwise (e.g. 1 on a machine shared with other work); the section
    records the count it ran with."""
    explicit = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(explicit) if explicit.isdigit() and int(explicit) > 0 else THREADS

def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads), {device}; "
            f"Python {platform.python_version()}, torch {torch.__version__}")

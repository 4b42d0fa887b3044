"""Figures the benchmarks measured that the chapters read, without importing a benchmark: one JSON file per
benchmark beside this module, written by ``python -m gancourse bench NAME``."""

from __future__ import annotations

import json
from pathlib import Path

from ganlib.errors import GanlibError

FOLDER = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """Where the benchmark `name` (its module's name, e.g. "pggan_growing") keeps its figures."""
    return FOLDER / f"{name}.json"


def load(name: str) -> dict:
    """The figures the benchmark `name` wrote (e.g. "pggan_growing")."""
    file = path(name)
    if not file.is_file():
        raise GanlibError(f"no figures of the benchmark {name!r} in {str(FOLDER)!r}: measure them with "
                          f"`python -m gancourse bench {name.replace('_', '-')}`.")
    return json.loads(file.read_text())


def speedup(race: dict, threshold: float) -> tuple[float | None, bool]:
    """From a race of `pggan_growing`: (fixed seconds / progressive seconds to `threshold`, whether it is only a
    lower bound: the fixed run stopped before reaching it, so the ratio uses its last second); (None, False) when
    growing never got there."""
    progressive, fixed = race["to_threshold"][str(threshold)]
    if progressive is None:
        return None, False
    if fixed is None:
        return race["curves"]["fixed"][-1][0] / progressive, True
    return fixed / progressive, False

"""Benchmarks: quality and speed figures that take minutes, written to docs/benchmarks.md.

``python -m gancourse bench [NAME ...]`` runs the named benchmarks (default: all) and replaces their sections of
the benchmarks file, each with the command that produced it, the machine and the date.

A benchmark is a module of this package with `TITLE` (its section's title), `measure(quick) -> dict` (runs it;
every figure its section reports, JSON-serialisable) and `report(measured) -> str` (the section's markdown body,
from those figures alone). A chapter adds its benchmark by registering the module in `BENCHMARKS`; one that grades
a chapter's notebooks is also named in `NOTEBOOKS`, and its `measure` gets their paths (see `measure`).
"""

from __future__ import annotations

import datetime
import re
import sys
import time
from pathlib import Path
from types import ModuleType

import torch

from ganlib.files import atomic_write_text

from . import (
    biggan_tricks,
    chapters,
    cpu_threads,
    dcgan_digits,
    ddp_throughput,
    grading_class,
    pggan_costs,
    pggan_growing,
    ring8,
    stylegan_mixing,
    throughput,
)
from .core import THREADS, machine, threads

HEADER = """# Benchmarks

Figures that take minutes to measure, produced by `python -m gancourse bench` (sections are replaced one by
one, so each states its own command, machine and date). Timings on shared machines are noisy: where a
claim is a comparison, both sides were measured in the same run, and the ratio is the figure to trust.
"""

BENCHMARKS: dict[str, ModuleType] = {
    "dcgan-digits": dcgan_digits,
    "ring8": ring8,
    "throughput": throughput,
    "grading": grading_class,
    "biggan-tricks": biggan_tricks,
    "ddp-throughput": ddp_throughput,
    "pggan-growing": pggan_growing,
    "pggan-costs": pggan_costs,
    "stylegan-mixing": stylegan_mixing,
    "chapters": chapters,
    "threads": cpu_threads,
}
NOTEBOOKS = {"grading": "01_vanilla_gan"}  # benchmarks that grade a chapter of the course: which one
FOLDERS = {"chapters": "notebooks"}  # benchmarks that run a folder of the course's notebooks: which one


def measure(name: str, quick: bool = False) -> dict:
    """The figures of benchmark `name`: its module's `measure(quick)`, given the course's solution and exercise
    notebooks (as `solution=` and `exercise=`) when `NOTEBOOKS` names its chapter, or the folder `FOLDERS`
    names (as `folder=`)."""
    module = BENCHMARKS[name]
    if name in NOTEBOOKS:
        from ..grading import course_notebooks

        return module.measure(quick, **course_notebooks(NOTEBOOKS[name]))
    if name in FOLDERS:
        return module.measure(quick, folder=Path(__file__).resolve().parents[2] / FOLDERS[name])
    return module.measure(quick)


def update_section(text: str, name: str, body: str) -> str:
    """Replace (or append) the section of benchmark `name` in the benchmarks file's text."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{begin}\n{body}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return text.rstrip() + "\n\n" + block + "\n"


def main(names: list[str], out: str | Path = "docs/benchmarks.md", quick: bool = False) -> None:
    from ganlib.errors import GanlibError

    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise GanlibError(f"unknown benchmark(s) {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}.")
    torch.set_num_threads(threads())
    out = Path(out)
    text = out.read_text() if out.is_file() else HEADER
    command = "python -m gancourse bench" + (" --quick" if quick else "")
    if threads() != THREADS:
        command = f"OMP_NUM_THREADS={threads()} {command}"
    from tqdm.auto import tqdm

    names = names or list(BENCHMARKS)
    bar = tqdm(names, desc="benchmarks", unit="section", disable=quick)  # the training runs show bars of their own
    for name in bar:
        module = BENCHMARKS[name]
        bar.set_postfix_str(name)
        print(f"running {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        body = module.report(measure(name, quick))
        stamp = datetime.date.today().isoformat()
        section = (f"## {module.TITLE}\n\nCommand: `{command} {name}` · {stamp} · {machine()} · "
                   f"{time.perf_counter() - start:.0f} s in all\n\n{body}")
        text = update_section(text, name, section)
        atomic_write_text(text, out)  # after each benchmark, so a long run keeps what it measured
        print(f"{name}: written to {out}", file=sys.stderr)

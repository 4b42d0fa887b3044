"""Benchmarks: quality and speed figures that take minutes, written to docs/benchmarks.md.

``python -m ganlib bench [NAME ...]`` runs the named benchmarks (default: all) and replaces their sections of
the benchmarks file, each with the command that produced it, the machine and the date. A chapter adds its
benchmark by registering a function in `BENCHMARKS` that returns the section's markdown body.
"""

from __future__ import annotations

import datetime
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..files import atomic_write_text
from . import stylegan_mixing
from .biggan_tricks import bench_biggan_tricks
from .core import THREADS, machine, threads
from .dcgan_digits import bench_dcgan_digits
from .ddp_throughput import bench_ddp_throughput
from .grading_class import bench_grading
from .pggan_growing import bench_pggan_growing
from .ring8 import bench_ring8
from .throughput import bench_throughput

HEADER = """# Benchmarks

Figures that take minutes to measure, produced by `python -m ganlib bench` (sections are replaced one by
one, so each states its own command, machine and date). Timings on shared machines are noisy: where a
claim is a comparison, both sides were measured in the same run, and the ratio is the figure to trust.
"""



BENCHMARKS: dict[str, tuple[str, Callable[[bool], str]]] = {
    "dcgan-digits": ("DCGAN on digits, cpu profile: ganlib against a tutorial-style DCGAN", bench_dcgan_digits),
    "ring8": ("Mode collapse on ring8: vanilla GAN against PacGAN2", bench_ring8),
    "throughput": ("Training-loop throughput: ganlib against a plain loop", bench_throughput),
    "grading": ("Grading a class of 30 submissions", bench_grading),
    "biggan-tricks": ("BigGAN on digits, cpu profile: each trick, batch size, truncation", bench_biggan_tricks),
    "ddp-throughput": ("Several processes: torchrun on the CPU with 1 and 2 processes", bench_ddp_throughput),
    "pggan-growing": ("PGGAN on shapes: progressive growing against the full resolution from the start",
                      bench_pggan_growing),
    "stylegan-mixing": (stylegan_mixing.TITLE,
                        lambda quick: stylegan_mixing.report(stylegan_mixing.measure(quick))),
}


def update_section(text: str, name: str, body: str) -> str:
    """Replace (or append) the section of benchmark `name` in the benchmarks file's text."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{begin}\n{body}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return text.rstrip() + "\n\n" + block + "\n"


def main(names: list[str], out: str | Path = "docs/benchmarks.md", quick: bool = False) -> None:
    from ..errors import GanlibError

    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise GanlibError(f"unknown benchmark(s) {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}.")
    torch.set_num_threads(threads())
    out = Path(out)
    text = out.read_text() if out.is_file() else HEADER
    command = "python -m ganlib bench" + (" --quick" if quick else "")
    if threads() != THREADS:
        command = f"OMP_NUM_THREADS={threads()} {command}"
    from tqdm.auto import tqdm

    names = names or list(BENCHMARKS)
    bar = tqdm(names, desc="benchmarks", unit="section", disable=quick)  # the training runs show bars of their own
    for name in bar:
        title, fn = BENCHMARKS[name]
        bar.set_postfix_str(name)
        print(f"running {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        body = fn(quick)
        stamp = datetime.date.today().isoformat()
        section = (f"## {title}\n\nCommand: `{command} {name}` · {stamp} · {machine()} · "
                   f"{time.perf_counter() - start:.0f} s in all\n\n{body}")
        text = update_section(text, name, section)
        atomic_write_text(text, out)  # after each benchmark, so a long run keeps what it measured
        print(f"{name}: written to {out}", file=sys.stderr)

"""CPU threads: each model family's training step with 1 and 2 threads, OpenMP's two ways of waiting, and 0, 1 or 3
other busy processes, to choose the default that `ganlib.setup` and the trainer use."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

TITLE = "CPU threads: steps per second, quiet and beside busy processes"
FAMILIES = ("gan", "dcgan", "pggan", "stylegan", "biggan")
THREAD_COUNTS = (1, 2)
WAITS = ("default", "passive")  # OpenMP's own (spins a while before it sleeps), and OMP_WAIT_POLICY=PASSIVE
LOADS = (0, 1, 3)  # competing busy processes
BUSY = "while True: pass"  # one competing process: a core's worth of work, as a second program would be


@contextlib.contextmanager
def competing(count: int, settle: float = 0.5):
    """`count` busy processes (`BUSY`) running for the time of the block, then stopped."""
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(count)]
    try:
        time.sleep(settle if count else 0)  # up and running
        yield busy
    finally:
        for process in busy:
            process.kill()
            process.wait()


def step_rates(families: list[str], thread_counts: list[int], loads: list[int], seconds: float, rounds: int,
               profile: str = "cpu") -> dict:
    """{str(load): {family: {str(threads): training steps per second}}} of each family's `profile` preset, in
    this process (whose OpenMP wait policy was fixed when torch was imported). The loads take turns, `rounds`
    times, so that the machine's other work weighs on each alike; within a turn every family and thread count
    trains for `seconds` (at least one step), after two steps of warm-up at the start."""
    import torch

    from .. import recipes

    trainers = {family: recipes.make_trainer(family, profile=profile, device="cpu") for family in families}
    for trainer in trainers.values():
        for n in thread_counts:
            torch.set_num_threads(n)  # the trainer's own `threads` option applies only in `train`
            for _ in range(2):
                trainer.train_step()
    done = {load: {f: {n: [0, 0.0] for n in thread_counts} for f in families} for load in loads}  # steps, seconds
    for _ in range(rounds):
        for load in loads:
            with competing(load):
                for family, trainer in trainers.items():
                    for n in thread_counts:
                        torch.set_num_threads(n)
                        steps, start = 0, time.perf_counter()
                        while steps < 1 or time.perf_counter() - start < seconds:
                            trainer.train_step()
                            steps += 1
                        done[load][family][n][0] += steps
                        done[load][family][n][1] += time.perf_counter() - start
    return {str(load): {f: {str(n): s / t for n, (s, t) in by_n.items()} for f, by_n in by_f.items()}
            for load, by_f in done.items()}


def measure_wait(wait: str, families: list[str], seconds: float, rounds: int, profile: str) -> dict:
    """`step_rates` in a fresh process whose OpenMP waits as `wait` says: "passive" imports ganlib first (it
    sets OMP_WAIT_POLICY=PASSIVE), "default" imports torch first (OpenMP's default stays)."""
    first = "import torch" if wait == "default" else "import ganlib"
    code = (f"{first}; import json, sys; from gancourse.bench.cpu_threads import step_rates; "
            f"print(json.dumps(step_rates(sys.argv[1].split(','), {list(THREAD_COUNTS)}, {list(LOADS)}, "
            f"float(sys.argv[2]), int(sys.argv[3]), sys.argv[4])))")
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", code, ",".join(families), str(seconds), str(rounds), profile],
                          env=environ, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {wait} process failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(quick: bool = False, families: tuple[str, ...] = FAMILIES) -> dict:
    """Steps per second for every family, thread count, wait policy and number of busy processes (`quick`: the
    smoke presets, a fraction of a second per cell), and the load average before and after."""
    seconds, rounds, profile = (0.1, 1, "smoke") if quick else (1.5, 2, "cpu")
    before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cells = {wait: measure_wait(wait, list(families), seconds, rounds, profile) for wait in WAITS}
    after = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"profile": profile, "seconds": seconds, "rounds": rounds, "cpus": os.cpu_count(),
            "families": list(families), "defaults": {family: default_setting(family, profile) for family in families},
            "loadavg": [before, after], "cells": cells}


def default_setting(family: str, profile: str) -> int:
    """The threads the course trains `family` with when OpenMP waits passively: its preset's `threads` (gan: 1),
    else every physical core, at most `ganlib.env.MAX_THREADS` (`ganlib.env.default_threads`)."""
    from ganlib import env

    from .. import recipes

    return recipes.preset(family, profile)["train"].get("threads") or min(env.MAX_THREADS, env.physical_cores())


def report(measured: dict) -> str:
    cells = measured["cells"]  # {wait: {str(load): {family: {str(threads): steps per second}}}}
    header = ["family", "default"] + [f"{w} wait, {n} thread{'s' if n > 1 else ''}" for w in WAITS
                                      for n in THREAD_COUNTS]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    worst = {}
    for family in measured["families"]:
        n_default = min(measured["defaults"][family], max(THREAD_COUNTS))  # what this table measured
        line = [f"`{family}`", f"passive, {n_default}"]
        for wait in WAITS:
            for n in THREAD_COUNTS:
                quiet = cells[wait]["0"][family][str(n)]
                slower = [quiet / cells[wait][str(load)][family][str(n)] for load in LOADS[1:]]
                text = f"{quiet:.1f}/s; x{slower[0]:.1f}, x{slower[1]:.1f}"
                if wait == "passive" and n == n_default:
                    worst[family] = slower[0]
                    text = f"**{text}**"
                line.append(text)
        rows.append("| " + " | ".join(line) + " |")
    loads = " and ".join(f"{value:.1f}" for value in measured["loadavg"] if value is not None)
    ok = [f for f, r in worst.items() if r <= 2.0]
    verdict = (f"At the default (bold), one busy process slows a step by at most x{max(worst.values()):.1f} "
               f"({len(ok)} of {len(worst)} families within the target of x2).")
    return f"""Training steps per second of each family's `{measured['profile']}` preset (its first steps: PGGAN's are
at its first resolution), after two steps of warm-up; each cell gives the steps per second without competing
processes, then how many times slower a step is beside 1 and 3 busy processes (each a Python busy loop). The
three loads take turns, {measured['rounds']} times, {measured['seconds']:g} s per cell each turn, so that the
machine's other work weighs on each alike (within one wait policy's process; the two policies ran one after
the other). `default wait` is OpenMP's own (a waiting thread spins before it sleeps; what torch does
unless told otherwise), `passive` is OMP_WAIT_POLICY=PASSIVE, which `import ganlib` sets before torch starts.
The default setting (bold): one thread for the 2-D toy models (the `gan` preset's `threads=1`), every core
(at most 4) otherwise, waiting passively. The machine has {measured['cpus']} logical CPUs and ran other work
too: one-minute load average {loads} before and after the run.

{chr(10).join(rows)}

{verdict}"""


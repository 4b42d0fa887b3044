"""CPU threads: each model family's training step with 1 and 2 threads, OpenMP's two ways of waiting, and 0, 1 or 3
other busy processes, to choose the default that `ganlib.setup` and the trainer use."""

from __future__ import annotations

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


def step_rates(families: list[str], thread_counts: list[int], seconds: float, profile: str = "cpu") -> dict:
    """{family: {str(threads): training steps per second}} of each family's `profile` preset, with each thread count
    in turn, `seconds` per count after two steps of warm-up, in this process (whose OpenMP wait policy was fixed
    when torch was imported)."""
    import torch

    from .. import recipes

    rates = {}
    for family in families:
        trainer = recipes.make_trainer(family, profile=profile, device="cpu")
        rates[family] = {}
        for n in thread_counts:
            torch.set_num_threads(n)  # the trainer's own `threads` option applies only in `train`
            for _ in range(2):
                trainer.train_step()
            steps, start = 0, time.perf_counter()
            while steps < 2 or time.perf_counter() - start < seconds:
                trainer.train_step()
                steps += 1
            rates[family][str(n)] = steps / (time.perf_counter() - start)
    return rates


def measure_wait(wait: str, families: list[str], seconds: float, profile: str) -> dict:
    """`step_rates` in a fresh process whose OpenMP waits as `wait` says: "passive" imports ganlib first (it
    sets OMP_WAIT_POLICY=PASSIVE), "default" imports torch first (OpenMP's default stays)."""
    first = "import torch" if wait == "default" else "import ganlib"
    code = (f"{first}; import json, sys; from gancourse.bench.cpu_threads import step_rates; "
            f"print(json.dumps(step_rates(sys.argv[1].split(','), {list(THREAD_COUNTS)}, float(sys.argv[2]), "
            f"sys.argv[3])))")
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", code, ",".join(families), str(seconds), profile], env=environ,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {wait} process failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(quick: bool = False, families: tuple[str, ...] = FAMILIES) -> dict:
    """Steps per second for every family, thread count, wait policy and number of busy processes (`quick`: the
    smoke presets, a fraction of a second per cell). The busy processes run while both policies' processes
    measure; the load average before each load."""
    seconds, profile = (0.2, "smoke") if quick else (3.0, "cpu")
    cells, loadavg = {}, {}
    for load in LOADS:
        busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(load)]
        try:
            time.sleep(0 if quick else 2)  # the busy processes up and running
            loadavg[str(load)] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            cells[str(load)] = {wait: measure_wait(wait, list(families), seconds, profile) for wait in WAITS}
        finally:
            for process in busy:
                process.kill()
                process.wait()
    return {"profile": profile, "seconds": seconds, "cpus": os.cpu_count(), "families": list(families),
            "defaults": {family: default_setting(family, profile) for family in families}, "loadavg": loadavg,
            "cells": cells}


def default_setting(family: str, profile: str) -> int:
    """The threads the course trains `family` with when OpenMP waits passively: its preset's `threads` (gan: 1),
    else every physical core, at most `ganlib.env.MAX_THREADS` (`ganlib.env.default_threads`)."""
    from ganlib import env

    from .. import recipes

    return recipes.preset(family, profile)["train"].get("threads") or min(env.MAX_THREADS, env.physical_cores())


def report(measured: dict) -> str:
    cells = measured["cells"]  # {str(load): {wait: {family: {str(threads): steps per second}}}}
    header = ["family", "default"] + [f"{w} wait, {n} thread{'s' if n > 1 else ''}" for w in WAITS
                                      for n in THREAD_COUNTS]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    worst = {}
    for family in measured["families"]:
        n_default = min(measured["defaults"][family], max(THREAD_COUNTS))  # what this table measured
        line = [f"`{family}`", f"passive, {n_default}"]
        for wait in WAITS:
            for n in THREAD_COUNTS:
                quiet = cells["0"][wait][family][str(n)]
                slower = [quiet / cells[str(load)][wait][family][str(n)] for load in LOADS[1:]]
                text = f"{quiet:.1f}/s; x{slower[0]:.1f}, x{slower[1]:.1f}"
                if wait == "passive" and n == n_default:
                    worst[family] = slower[0]
                    text = f"**{text}**"
                line.append(text)
        rows.append("| " + " | ".join(line) + " |")
    loads = ", ".join(f"{load} busy: {value:.1f}" for load, value in measured["loadavg"].items() if value is not None)
    ok = [f for f, r in worst.items() if r <= 2.0]
    verdict = (f"At the default (bold), one busy process slows a step by at most x{max(worst.values()):.1f} "
               f"({len(ok)} of {len(worst)} families within the target of x2).")
    return f"""Training steps per second of each family's `{measured['profile']}` preset (its first steps: PGGAN's are
at its first resolution), {measured['seconds']:g} s per cell after two steps of warm-up; each cell gives the
quiet machine's steps per second, then how many times slower a step is beside 1 and 3 busy processes (each a
Python busy loop). `default wait` is OpenMP's own (a waiting thread spins before it sleeps; what torch does
unless told otherwise), `passive` is OMP_WAIT_POLICY=PASSIVE, which `import ganlib` sets before torch starts.
The default setting (bold): one thread for the 2-D toy models (the `gan` preset's `threads=1`), every core
(at most 4) otherwise, waiting passively. The machine has {measured['cpus']} logical CPUs and ran other work
too; one-minute load average once the busy processes had started: {loads}.

{chr(10).join(rows)}

{verdict}"""


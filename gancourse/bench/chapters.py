"""Chapters: each lecture notebook run from top to bottom in the cpu profile, as a student runs it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ganlib.errors import GanlibError

TITLE = "Chapters: each lecture notebook in the cpu profile"
TIME_LIMIT = 3600  # seconds per notebook; the course's target is 600 on two quiet cores
GRACE = 60  # seconds beyond it for the kernel to start and stop, after which the notebook's process is killed


def chapters(folder: Path) -> list[str]:
    """The names of the notebooks in `folder` (the lectures), in the course's order ("01_vanilla_gan", ...)."""
    return sorted(p.stem for p in Path(folder).glob("*.ipynb"))


def execute(path: str, timeout: int) -> dict:
    """Run one notebook in a fresh kernel, in a temporary folder (so no earlier run folder is resumed), and
    return its wall seconds, the kernel's CPU seconds and peak resident memory (its own processes included: it
    is this process's only child), and the error it raised (None). Call it in a process of its own
    (`run_notebook`): the children's figures are the whole process's."""
    import resource

    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    error = None
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="chapter-") as folder:
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": folder}})
        try:
            client.execute()
        except Exception as e:  # what it raised is the figure
            last = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()  # without the terminal's colours
            error = f"{type(e).__name__}: {last[-1] if last else ''}"[:300]
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the kernel and the processes it started
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, kibibytes on Linux
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_bytes": usage.ru_maxrss * scale,
            "error": error}


def run_notebook(path: Path, profile: str = "cpu", timeout: int = TIME_LIMIT) -> dict:
    """`execute` the notebook at `path` in `profile`, in a process of its own, stopped (with every process it
    started) after `timeout` seconds. That process runs this file as a script, not the package, which would load
    torch: on Linux a child's peak memory starts from its parent's at the fork."""
    environ = {**os.environ, "GANLIB_PROFILE": profile, "MPLBACKEND": "Agg"}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, __file__, str(path), str(timeout)], env=environ, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout + GRACE)
    except subprocess.TimeoutExpired:
        import psutil

        family = psutil.Process(process.pid).children(recursive=True)  # the kernel runs in a session of its own
        os.killpg(process.pid, signal.SIGKILL)
        for child in family:  # the kernel and whatever it started
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        process.communicate()
        return {"wall_s": time.perf_counter() - start, "cpu_s": None, "peak_bytes": None,
                "error": f"stopped after {timeout} s"}
    if process.returncode != 0:
        return {"wall_s": time.perf_counter() - start, "cpu_s": None, "peak_bytes": None,
                "error": f"the runner failed: {err.strip().splitlines()[-1] if err.strip() else process.returncode}"}
    return json.loads(out.strip().splitlines()[-1])


def measure(quick: bool = False, folder: Path | None = None, names: list[str] | None = None) -> dict:
    """Run the notebooks `names` (default: all) of `folder` (the runner passes the lectures' folder) one after
    another, in the cpu profile (`quick`: smoke), each with the load average before it."""
    profile = "smoke" if quick else "cpu"
    known = chapters(folder)
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise GanlibError(f"no lecture notebook {', '.join(unknown)}: choose from {', '.join(known)}.")
    rows = {}
    for name in names or known:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        rows[name] = {**run_notebook(Path(folder) / f"{name}.ipynb", profile, TIME_LIMIT), "load_before": load}
        print(f"{name}: {rows[name]}", file=sys.stderr, flush=True)
    return {"profile": profile, "time_limit_s": TIME_LIMIT, "processes": os.cpu_count(), "chapters": rows,
            "not_run": [n for n in known if n not in rows]}


def report(measured: dict) -> str:
    rows = ["| chapter | wall time | CPU time | CPU / wall | peak memory | raised | load average before |",
            "|---|---|---|---|---|---|---|"]
    for name, r in measured["chapters"].items():
        cpu = f"{r['cpu_s'] / 60:.1f} min" if r["cpu_s"] is not None else "-"
        ratio = f"{r['cpu_s'] / r['wall_s']:.2f}" if r["cpu_s"] is not None else "-"
        peak = f"{r['peak_bytes'] / 2**30:.2f} GiB" if r["peak_bytes"] is not None else "-"
        load = f"{r['load_before']:.1f}" if r.get("load_before") is not None else "-"
        rows.append(f"| {name} | {r['wall_s'] / 60:.1f} min | {cpu} | {ratio} | {peak} | "
                    f"{r['error'] or 'no'} | {load} |")
    missing = (f"\n\nNot run in this measurement: {', '.join(measured['not_run'])}."
               if measured["not_run"] else "")
    return f"""Each lecture notebook (`notebooks/`) executed from top to bottom in the `{measured['profile']}`
profile by `nbclient`, in a fresh kernel and an empty working folder (no earlier run is resumed), one notebook
at a time, each stopped after {measured['time_limit_s']} s. CPU time and peak resident memory are the kernel's
and those of the processes it started; CPU / wall above 1 means the chapter kept more than one core busy. The
machine ran other work at the same time: the load average (on {measured['processes']} logical CPUs) is the
one-minute figure before each notebook started. The course's target: at most 10 minutes on two quiet cores.

{chr(10).join(rows)}{missing}"""


def measured_minutes(text: str) -> dict[str, float]:
    """{chapter: wall minutes} of the chapters that ran without an error, from this benchmark's section of the
    benchmarks file's `text`."""
    section = text.split("<!-- bench:chapters -->", 1)[-1].split("<!-- /bench:chapters -->", 1)[0]
    rows = re.findall(r"^\| (\S+) \| ([0-9.]+) min \| .*\| no \| [^|]* \|$", section, re.M)
    return {name: float(minutes) for name, minutes in rows}


def run_time_line(minutes: float | None) -> str:
    """The line at the top of a lecture that states its run time, from `measured_minutes` (None: not measured)."""
    if minutes is None:
        return ("*Run time (`cpu` profile): not measured yet; see `docs/benchmarks.md`, "
                "\"Chapters\", for the others.*")
    return (f"*Run time (`cpu` profile): about {max(1, round(minutes))} minutes on a 2-core machine that was running "
            f"other work too\n(`docs/benchmarks.md`, \"Chapters\").*")


if __name__ == "__main__":  # run_notebook's process: python chapters.py NOTEBOOK TIMEOUT
    print(json.dumps(execute(sys.argv[1], int(sys.argv[2]))))

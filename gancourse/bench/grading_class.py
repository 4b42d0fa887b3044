"""Grading: a class's submissions of chapter 01."""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path


def _with_cell(path: Path, source: str) -> str:
    """A notebook's JSON text with a code cell appended: a later definition of a function replaces the
    notebook's own, as when a student edits it (the grader defines every cell's functions in order)."""
    import json

    nb = json.loads(Path(path).read_text())
    nb["cells"].append({"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                        "source": source})
    return json.dumps(nb)


WRONG_SIGN = "import torch.nn.functional as F\n\n\ndef generator_loss(fake_logits):\n" \
             "    return -F.softplus(-fake_logits).mean()\n"  # chapter 01's generator loss, with the wrong sign
ENDLESS = "def discriminator_loss(real_logits, fake_logits):\n    while True:\n        pass\n"
LOOP_KIND = "endless loop in discriminator_loss"
TITLE = "Grading a class of 30 submissions"


_ATTACKS = {  # what a hostile notebook does when the grader defines its classes (as in tests/test_grading_attacks.py)
    "replaces the checks with ones that pass": "import gancourse.checks as c\n"
        "from gancourse.checks import CheckResult\n"
        "for k in list(c.CHECKS):\n    c.CHECKS[k] = lambda fn, k=k: CheckResult(k, True, 'correct.')",
    "forges a results file, then exits": "import json, os\nopen('events.jsonl', 'w').write(json.dumps("
        "{'event': 'result', 'passed': True}))\nos._exit(0)",
    "starts a detached daemon": "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', "
        "'import time; time.sleep(60)'], start_new_session=True)",
    "kills every process it can see": "import os, signal\nfor p in os.listdir('/proc'):\n    if p.isdigit() and "
        "int(p) != os.getpid():\n        try:\n            os.kill(int(p), signal.SIGKILL)\n"
        "        except OSError:\n            pass",
    "runs 40 busy processes": "import os\nfor _ in range(40):\n    if os.fork() == 0:\n        while True:\n"
        "            pass\nwhile True:\n    pass",
    "holds 6 x 400 MB in child processes": "import os, time\nfor _ in range(6):\n    if os.fork() == 0:\n"
        "        block = bytearray(400 * 2**20)\n        block[::4096] = b'x' * len(block[::4096])\n"
        "        time.sleep(60)\ntime.sleep(60)",
}
REPLY_BOMB = "def generator_loss(fake_logits):\n    items = list(range(10_000))\n    return [items] * 10_000\n"


def _with_attack(path: Path, code: str) -> str:
    """The exercise notebook (every answer wrong) with `code` run in a class body when the grader defines it."""
    import json

    nb = json.loads(path.read_text())
    body = "def _attack():\n" + "".join(f"    {line}\n" for line in code.splitlines())
    body += "\nclass _Run:\n    _attack()\n"
    nb["cells"].insert(1, {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                           "source": body})
    return json.dumps(nb)


def measure(quick: bool = False, *, solution: str | Path, exercise: str | Path) -> dict:
    """Grade a class of chapter 01 notebooks built from its `solution` and `exercise` notebooks (the course's,
    passed by the runner), then the same class with the attacks added: for each kind of submission its count,
    median seconds, mean points and status; the wall times; the start of a fresh Python process for comparison."""
    import subprocess
    import tempfile

    from .. import grading

    kinds = {  # kind: (notebook text, how many of a class of 30)
        "solution": (Path(solution).read_text(), 12),
        "untouched exercise": (Path(exercise).read_text(), 8),
        "generator loss with the wrong sign": (_with_cell(solution, WRONG_SIGN), 8),
        LOOP_KIND: (_with_cell(exercise, ENDLESS), 2),
    }
    attacks = {f"attack: {what}": (_with_attack(exercise, code), 1) for what, code in _ATTACKS.items()}
    attacks["attack: returns one list 10,000 times"] = (_with_cell(exercise, REPLY_BOMB), 1)
    jobs, timeout = 2, grading.DEFAULT_TIMEOUT
    fresh = []
    for _ in range(1 if quick else 3):  # what a new Python process per submission would pay before any check
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import gancourse.checks"], check=True)
        fresh.append(time.perf_counter() - start)

    def grade_class(kinds: dict) -> tuple[dict, list]:  # (the figures, the graded submissions)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "submissions"
            folder.mkdir()
            # the grader takes the students in name order: the attacks are spread evenly among the others
            ordered = [(k, text) for k, (kind, (text, count)) in enumerate(kinds.items()) if not kind.startswith(
                "attack") for _ in range(1 if quick else count)]
            hostile = [(k, text) for k, (kind, (text, count)) in enumerate(kinds.items()) if kind.startswith("attack")]
            for n, item in enumerate(hostile):
                ordered.insert((n + 1) * len(ordered) // (len(hostile) + 1), item)
            for position, (k, text) in enumerate(ordered):
                (folder / f"{position:03d}-k{k:02d}.ipynb").write_text(text)
            log = []
            start = time.perf_counter()
            graded = grading.grade(folder, Path(tmp) / "grades.csv", timeout=timeout, jobs=jobs, log=log.append)
            wall = time.perf_counter() - start
        rows = []
        for k, kind in enumerate(kinds):
            mine = [g for g in graded if g.student.endswith(f"-k{k:02d}")]
            rows.append({"kind": kind, "count": len(mine), "seconds": [g.seconds for g in mine],
                         "points": statistics.mean(g.total for g in mine), "out_of": len(mine[0].outcomes),
                         "status": mine[0].status})
        confinement = next((line.split(": ", 1)[1] for line in log if line.startswith("confinement: ")), "?")
        return {"wall": wall, "confinement": confinement, "kinds": rows}, graded

    load_before = os.getloadavg()[0]
    graded, in_class = grade_class(kinds)
    attacked, with_attacks = grade_class({**kinds, **attacks})
    marks = lambda results: sorted((g.student.split("-")[1], g.total, g.status) for g in results  # the class's own
                                   if int(g.student.split("-k")[1]) < len(kinds))
    return {"jobs": jobs, "timeout": timeout, "fresh": fresh, "class": graded, "attacked": attacked,
            "same_marks": marks(with_attacks) == marks(in_class), "load": (load_before, os.getloadavg()[0])}


def report(measured: dict) -> str:
    graded, attacked, fresh = measured["class"], measured["attacked"], measured["fresh"]

    def table(kinds: list[dict]) -> str:
        return "\n".join(f"| {k['kind']} | {k['count']} | {statistics.median(k['seconds']):.2f} | "
                         f"{k['points']:.0f} of {k['out_of']} | {k['status']} |" for k in kinds)

    n = sum(k["count"] for k in graded["kinds"])
    ordinary = [s for k in graded["kinds"] if k["kind"] != LOOP_KIND for s in k["seconds"]]
    same = "the same as above" if measured["same_marks"] else "NOT the same as above"
    honest = [statistics.median(next(k for k in run["kinds"] if k["kind"] == "solution")["seconds"])
              for run in (graded, attacked)]
    return f"""`python -m gancourse grade` on a class of {n} chapter 01 notebooks, `--jobs {measured['jobs']}`,
`--timeout {measured['timeout']:g}` (each exercise gets an equal share of the time left). Seconds per submission are
measured in its checker, from the start of the submission's confined process to its end. Confinement:
{graded['confinement']}.

| submission | count | s each (median) | points | status |
|---|---|---|---|---|
{table(graded['kinds'])}

Wall time for the whole class: **{graded['wall']:.1f} s** (including the grading server's start, which imports torch
once). The {len(ordinary)} submissions without a loop took {sum(ordinary):.1f} s in all; an endless
loop costs its exercise's share of the time limit and the other exercises are still graded. For comparison, a
fresh Python process that only imports torch and the checks takes {statistics.median(fresh):.1f} s (median of
{len(fresh)}): {n} of them would cost {n * statistics.median(fresh):.0f} s of CPU before the
first check.

The same class with {sum(k['count'] for k in attacked['kinds']) - n} hostile submissions added (each the untouched
exercise, so every answer is wrong, plus the attack): wall time **{attacked['wall']:.1f} s**; the other
submissions' marks and statuses are {same}. A correct submission took {honest[0]:.2f} s without the attacks
and {honest[1]:.2f} s with them (median): **{honest[1] / honest[0]:.2f}x**. The machine's load average was
{measured['load'][0]:.1f} before and {measured['load'][1]:.1f} after (it is shared: compare the rows with each other).

| submission | count | s each (median) | points | status |
|---|---|---|---|---|
{table(attacked['kinds'])}"""

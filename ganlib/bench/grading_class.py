"""Grading: a class's submissions of chapter 01."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path


def _edited(path: Path, old: str, new: str) -> str:
    """A notebook's JSON text with `old` replaced by `new` in the one cell that contains it."""
    import json

    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if old in "".join(c["source"])]
    assert len(cells) == 1, f"{old!r} is in {len(cells)} cells of {path}"
    cells[0]["source"] = "".join(cells[0]["source"]).replace(old, new)
    return json.dumps(nb)


_ATTACKS = {  # what a hostile notebook does when the grader defines its classes (as in tests/test_grading_attacks.py)
    "replaces the checks with ones that pass": "import ganlib.checks as c\nfrom ganlib.checks import CheckResult\n"
        "for k in list(c.CHECKS):\n    c.CHECKS[k] = lambda fn, k=k: CheckResult(k, True, 'correct.')",
    "forges a results file, then exits": "import json, os\nopen('events.jsonl', 'w').write(json.dumps("
        "{'event': 'result', 'passed': True}))\nos._exit(0)",
    "starts a detached daemon": "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', "
        "'import time; time.sleep(60)'], start_new_session=True)",
    "kills every process it can see": "import os, signal\nfor p in os.listdir('/proc'):\n    if p.isdigit() and "
        "int(p) != os.getpid():\n        try:\n            os.kill(int(p), signal.SIGKILL)\n"
        "        except OSError:\n            pass",
}


def _with_attack(path: Path, code: str) -> str:
    """The exercise notebook (every answer wrong) with `code` run in a class body when the grader defines it."""
    import json

    nb = json.loads(path.read_text())
    body = "def _attack():\n" + "".join(f"    {line}\n" for line in code.splitlines())
    body += "\nclass _Run:\n    _attack()\n"
    nb["cells"].insert(1, {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                           "source": body})
    return json.dumps(nb)


def bench_grading(quick: bool = False) -> str:
    import subprocess
    import tempfile

    from .. import grading

    root = Path(__file__).resolve().parents[2]
    solution, exercise = root / "solutions" / "01_vanilla_gan.ipynb", root / "exercises" / "01_vanilla_gan.ipynb"
    kinds = {  # kind: (notebook text, how many of a class of 30)
        "solution": (solution.read_text(), 12),
        "untouched exercise": (exercise.read_text(), 8),
        "generator loss with the wrong sign": (_edited(solution, "return F.softplus(-fake_logits)",
                                                       "return -F.softplus(-fake_logits)"), 8),
        "endless loop in discriminator_loss": (_edited(exercise, 'raise NotImplementedError("discriminator_loss',
                                                       'while True: pass  # ("'), 2),
    }
    attacks = {f"attack: {what}": (_with_attack(exercise, code), 1) for what, code in _ATTACKS.items()}
    jobs, timeout = 2, grading.DEFAULT_TIMEOUT
    fresh = []
    for _ in range(1 if quick else 3):  # what a new Python process per submission would pay before any check
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import ganlib.checks"], check=True)
        fresh.append(time.perf_counter() - start)

    def grade_class(kinds: dict) -> tuple[list, float, str, str]:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "submissions"
            folder.mkdir()
            names = {}
            for k, (kind, (text, count)) in enumerate(kinds.items()):
                names[kind] = f"k{k:02d}"
                for j in range(1 if quick else count):
                    (folder / f"k{k:02d}-{j:02d}.ipynb").write_text(text)
            log = []
            start = time.perf_counter()
            graded = grading.grade(folder, Path(tmp) / "grades.csv", timeout=timeout, jobs=jobs, log=log.append)
            wall = time.perf_counter() - start
        rows = []
        for kind in kinds:
            mine = [g for g in graded if g.student.startswith(names[kind])]
            rows.append(f"| {kind} | {len(mine)} | {statistics.median(g.seconds for g in mine):.2f} | "
                        f"{statistics.mean(g.total for g in mine):.0f} of {len(mine[0].outcomes)} | {mine[0].status} |")
        confinement = next((line.split(": ", 1)[1] for line in log if line.startswith("confinement: ")), "?")
        return graded, wall, "\n".join(rows), confinement

    graded, wall, rows, confinement = grade_class(kinds)
    with_attacks, attacked_wall, attacked_rows, _ = grade_class({**kinds, **attacks})
    ordinary = [g.seconds for g in graded if not g.student.startswith("k03")]
    marks = lambda results: sorted((g.student, g.total, g.status) for g in results if g.student < "k04")
    same = "the same as above" if marks(with_attacks) == marks(graded) else "NOT the same as above"
    return f"""`python -m ganlib grade` on a class of {len(graded)} chapter 01 notebooks, `--jobs {jobs}`,
`--timeout {timeout:g}` (each exercise gets an equal share of the time left). Seconds per submission are
measured in its checker, from the start of the submission's confined process to its end. Confinement:
{confinement}.

| submission | count | s each (median) | points | status |
|---|---|---|---|---|
{rows}

Wall time for the whole class: **{wall:.1f} s** (including the grading server's start, which imports torch
once). The {len(ordinary)} submissions without a loop took {sum(ordinary):.1f} s in all; an endless
loop costs its exercise's share of the time limit and the other exercises are still graded. For comparison, a
fresh Python process that only imports torch and the checks takes {statistics.median(fresh):.1f} s (median of
{len(fresh)}): {len(graded)} of them would cost {len(graded) * statistics.median(fresh):.0f} s of CPU before the
first check.

The same class with {len(with_attacks) - len(graded)} hostile submissions added (each the untouched exercise,
so every answer is wrong, plus the attack): wall time **{attacked_wall:.1f} s**; the other submissions' marks
and statuses are {same}.

| submission | count | s each (median) | points | status |
|---|---|---|---|---|
{attacked_rows}"""

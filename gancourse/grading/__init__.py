"""Grading: every submitted notebook of a chapter, scored by the same checks that give students feedback.

``python -m gancourse grade SUBMISSIONS_DIR --out grades.csv`` finds one notebook per student (a notebook file,
or a folder per student), scores each exercise with its check from `gancourse.checks.CHECKS`, and writes a CSV
(one row per student, one column per exercise, a total and a status) and a markdown feedback file per
student with every check's message.

What a chapter's exercises are is read from its solution notebook (`chapters.py`): each call
``checks.check_<name>(expr)`` is one exercise, `<name>` its check and `expr` what the check is given
(usually the exercise's function). A new chapter therefore needs nothing here.

How a submission runs. The grader does not execute the notebook top to bottom: it *extracts* the exercises
(`extraction.py`): from every code cell it takes the top-level ``def`` and ``class`` statements, literal
constants, and the imports these use, and defines them in a fresh module. This survives what students do to
notebooks (cells moved, re-run out of order, check cells deleted, long training cells, a syntax error in an
unrelated cell) and costs no training time; it relies on the course's convention that exercise functions
are self-contained.

Where verdicts are made. The student's code runs in a confined process of its own (`sandbox.py`) that only
calls the student's functions on inputs the checks chose and sends back raw results. The checks themselves,
the references they compare with, the private checks and the verdicts run in a trusted checker process that
loads no student code and reads the submission's replies as tensors and plain values only, under a size
limit and a deadline (`remote.py`, `codec.py`). Nothing the submission does to its own process (replacing the checks,
patching json, forging files, exiting early) reaches a verdict; a loop, a crash or a flood of output costs
that submission's marks only and is written in its feedback.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from ganlib.errors import GanlibError

from . import sandbox
from .chapters import (
    Chapter,
    Exercise,
    PrivateChecks,
    best_chapter,
    check_calls,
    columns,
    course_chapters,
    course_notebooks,
    find_chapter,
    match,
    notebook_code,
    read_chapter,
)
from .extraction import define as _define  # noqa: F401  the extraction, for the tests
from .report import STATUSES, Graded, GradesFile, Outcome, feedback, feedback_names, write_feedback
from .runner import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT, imported_lazily, run
from .submissions import MAX_NOTEBOOK_BYTES, Submission, collect, find_submissions, read_submission, unique_names

__all__ = ["DEFAULT_MEMORY_MB", "DEFAULT_TIMEOUT", "MAX_NOTEBOOK_BYTES", "STATUSES", "Chapter", "Exercise",
           "Graded", "Outcome", "PrivateChecks", "Submission", "best_chapter", "check_calls", "collect", "columns",
           "course_chapters", "course_notebooks", "feedback", "feedback_names", "find_chapter", "find_submissions",
           "grade", "match", "notebook_code", "read_chapter", "read_submission", "run"]


def grade(folder: str | Path, out: str | Path, chapter: str | None = None, timeout: float = DEFAULT_TIMEOUT,
          jobs: int | None = None, extra_checks: str | Path | None = None, feedback_dir: str | Path | None = None,
          memory_mb: int = DEFAULT_MEMORY_MB, resume: bool = False, weaker_isolation: bool = False,
          log: Callable[[str], None] = print) -> list[Graded]:
    """`python -m gancourse grade`: grade every submission in `folder`, write the CSV `out` (a row as each
    submission finishes) and the feedback files (default: a folder beside the CSV, `<out stem>-feedback/`).
    With `resume`, students whose notebook is unchanged since the CSV's earlier run keep their row. Without
    Linux namespaces it refuses (a GanlibError saying how to enable them) unless `weaker_isolation`."""
    out = Path(out).absolute()
    if out.suffix.lower() != ".csv":
        raise GanlibError(f"--out {str(out)!r}: the grades file must end in .csv.")
    if timeout <= 0 or (jobs is not None and jobs < 1) or memory_mb < 64:
        raise GanlibError("--timeout must be positive, --jobs at least 1 and --memory at least 64 (MB).")
    feedback_dir = Path(feedback_dir).absolute() if feedback_dir else out.with_name(f"{out.stem}-feedback")
    known = course_chapters()
    chosen = find_chapter(chapter, known) if chapter else None
    chosen, submissions = collect(folder, chosen, known, skip=(feedback_dir, out))
    for warning in unique_names(submissions):
        log(f"warning: {warning}")
    chosen.require_checks()
    private = PrivateChecks.load(extra_checks) if extra_checks else None
    if private:
        private.require(chosen)
    confinement = sandbox.probe(imported_lazily())
    why = confinement.refusal() if not weaker_isolation else confinement.weaker_refusal()
    if why:
        raise GanlibError(why[0].upper() + why[1:] + ".")
    cols = columns(chosen, private)
    jobs = jobs or os.cpu_count() or 1
    names = feedback_names([s.student for s in submissions])
    grades = GradesFile(out, cols, resume)
    feedback_dir.mkdir(parents=True, exist_ok=True)
    kept, todo = [], []
    for sub in submissions:
        row = grades.earlier(sub.student, sub.shown, sub.sha256) if resume else None
        if row is None:
            todo.append(sub)
            continue
        grades.add_row([row[k] for k in row])
        kept.append(Graded(sub.student, sub.shown, row["status"],
                           [Outcome(c, row.get(c) == "1", "graded in the earlier run") for c in cols], [],
                           sha256=sub.sha256))
    log(f"grading {len(todo)} submission(s) of {chosen.name} ({', '.join(cols)}) with {jobs} job(s), "
        f"at most {timeout:g} s each" + (f"; {len(kept)} unchanged since the earlier run kept" if kept else ""))
    width = max(len(s.student) for s in submissions)
    start = time.time()

    def done(g: Graded) -> None:
        grades.add(g)
        try:
            write_feedback(feedback_dir / names[g.student], feedback(g, chosen.name))
        except OSError as e:  # this student's feedback only: every other student is still graded
            log(f"warning: the feedback of {g.student} could not be written ({e.strerror or e}); its CSV row is kept.")
        log(f"  {g.student:<{width}}  {g.total}/{len(cols)}  {g.status:<8} {g.seconds:5.1f} s")

    try:
        graded = run([(s, chosen) for s in todo], timeout=timeout, jobs=jobs, memory_mb=memory_mb, private=private,
                     hidden=(Path(folder).absolute(), out, feedback_dir), on_done=done, log=log)
    finally:
        grades.close()
    graded = kept + graded
    counts = Counter(g.status for g in graded)
    mean = sum(g.total for g in graded) / len(graded)
    log(f"graded {len(graded)} submission(s) in {time.time() - start:.0f} s: mean {mean:.2f} of {len(cols)}; "
        + ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])
        + f". Grades: {out}; feedback: {feedback_dir}/")
    return graded

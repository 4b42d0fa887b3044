"""Grading: every submitted notebook of a chapter, scored by the same checks that give students feedback.

``python -m ganlib grade SUBMISSIONS_DIR --out grades.csv`` finds one notebook per student (a notebook file,
or a folder per student), scores each exercise with its check from `ganlib.checks.CHECKS`, and writes a CSV
(one row per student, one column per exercise, a total and a status) and a markdown feedback file per
student with every check's message.

What a chapter's exercises are is read from its solution notebook: each call ``checks.check_<name>(expr)``
is one exercise, `<name>` its check and `expr` what the check is given (usually the exercise's function or
class). A new chapter therefore needs nothing here.

How a submission runs. The grader does not execute the notebook top to bottom: it *extracts* the exercises.
From every code cell it takes the top-level ``def`` and ``class`` statements, literal constants, and the
imports these use, defines them in a fresh module, and calls each check on the exercise's function or class.
This survives what students do to notebooks (cells moved, re-run out of order, check cells deleted, long
training cells, a syntax error in an unrelated cell) and costs no training time; it relies on the course's
convention that exercise functions are self-contained (they use only imported modules and other functions
and classes of the notebook).

Isolation. Submissions are untrusted code. Each one runs in its own child process (forked from a server
that has imported torch once, so a submission starts in milliseconds), in a fresh session and working
folder, with: a wall-clock limit for the whole submission and a share of it per exercise, a memory limit,
a cap on what it prints and writes, one CPU thread, no GPU, ``GANLIB_PROFILE=smoke`` and
``GANLIB_OFFLINE=1``. A loop, a crash or a flood of output costs that submission's marks only, and is
written in its feedback. This protects the grading run, not the machine: for a real course, run the grader
in a container (see the README).
"""

from __future__ import annotations

import ast
import csv
import difflib
import io
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import checks
from .errors import GanlibError

DEFAULT_TIMEOUT = 60.0  # seconds per submission
DEFAULT_MEMORY_MB = 2048  # what a submission may allocate beyond the imported libraries
MAX_NOTEBOOK_BYTES = 100 * 2**20  # larger files are not read
OUTPUT_KEPT = 20_000  # characters of a submission's printed output kept for its feedback
OUTPUT_SHOWN = 2_000  # ... of which the feedback shows this many
FILE_SIZE_LIMIT = 16 * 2**20  # no file a submission writes may grow beyond this (bytes)
STATUSES = ("ok", "timeout", "crashed", "invalid", "missing")
_CHECK_CALL = re.compile(r"^check_(\w+)$")


# ----------------------------------------------------------------------------------------------------------
# Chapters: which exercises a notebook has, read from its check calls


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: the check `checks.CHECKS[name]`, called on the expression `call`."""

    name: str  # the check's name in checks.CHECKS, and the CSV column
    call: str  # what the check is given, as written in the solution notebook, e.g. "train_step"


@dataclass(frozen=True)
class Chapter:
    """A chapter's exercises, in notebook order."""

    name: str  # the notebook's stem, e.g. "01_vanilla_gan"
    exercises: tuple[Exercise, ...]

    def require_checks(self) -> None:
        """Raise a GanlibError when the chapter cannot be graded: no check calls, or one CHECKS lacks."""
        if not self.exercises:
            raise GanlibError(f"{self.name} calls no checks.check_<name>(...): pass a solution or exercise notebook "
                              f"of the course.")
        unknown = [e.name for e in self.exercises if e.name not in checks.CHECKS]
        if unknown:
            raise GanlibError(f"{self.name} calls check_{unknown[0]}, which ganlib.checks.CHECKS does not register: "
                              f"register it there, or update ganlib.")


def check_calls(source: str) -> list[Exercise]:
    """The `check_<name>(expr)` calls in a cell's source (any cell that is not valid Python has none)."""
    tree = _parse(source)[0]
    found = []
    for node in ast.walk(tree) if tree else ():
        if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords:
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            m = _CHECK_CALL.match(func)
            if m:
                found.append(Exercise(m.group(1), ast.unparse(node.args[0])))
    return sorted(found, key=lambda e: source.find(f"check_{e.name}"))


def read_chapter(path: str | Path) -> Chapter:
    """The exercises of a solution (or exercise) notebook: one per `checks.check_<name>(...)` call."""
    path = Path(path)
    try:
        cells = notebook_code(json.loads(path.read_text(encoding="utf-8")))
    except Exception as e:
        raise GanlibError(f"cannot read {str(path)!r} as a notebook ({_first_line(e)}): pass the chapter's "
                          f"solution or exercise notebook.") from None
    exercises: dict[str, Exercise] = {}
    for _, source in cells:
        for ex in check_calls(source):
            exercises.setdefault(ex.name, ex)
    return Chapter(path.stem, tuple(exercises.values()))


def course_chapters() -> list[Chapter]:
    """Every chapter with exercises in the course's `solutions/` folder (in the current folder, or beside the
    installed ganlib package); [] when neither exists, e.g. when ganlib was installed without the repository."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[1]):
        for folder in ("solutions", "exercises"):
            paths = sorted((root / folder).glob("[0-9]*.ipynb"))
            if paths:
                return [c for c in map(read_chapter, paths) if c.exercises]
    return []


def find_chapter(spec: str, known: list[Chapter]) -> Chapter:
    """`--chapter`: a notebook path, or a chapter number or name of the course ("01", "1", "01_vanilla_gan")."""
    if spec.endswith(".ipynb") or Path(spec).is_file():
        return read_chapter(spec)
    key = spec.zfill(2) if spec.isdigit() else spec
    for chapter in known:
        if key in (chapter.name, chapter.name.split("_")[0]):
            return chapter
    if not known:
        raise GanlibError(f"--chapter {spec}: the course's solutions/ folder is not here; run from the course "
                          f"folder, or pass the chapter's exercise notebook, e.g. --chapter 01_vanilla_gan.ipynb.")
    raise GanlibError(f"--chapter {spec}: no such chapter; choose one of {', '.join(c.name for c in known)}.")


def match(chapter: Chapter, code: str) -> float:
    """The fraction of a chapter's exercises that a notebook's code mentions (its function or its check)."""
    def present(ex: Exercise) -> bool:
        return any(re.search(rf"\b{re.escape(word)}\b", code) for word in (f"check_{ex.name}", ex.call))

    return sum(present(ex) for ex in chapter.exercises) / len(chapter.exercises)


def best_chapter(chapters: list[Chapter], code: str) -> Chapter | None:
    scores = sorted(((match(c, code), c.name, c) for c in chapters), key=lambda s: -s[0])
    if not scores or scores[0][0] == 0 or (len(scores) > 1 and scores[1][0] == scores[0][0]):
        return None
    return scores[0][2]


# ----------------------------------------------------------------------------------------------------------
# Submissions: one notebook per student


@dataclass
class Submission:
    """One student's notebook, read (not run) by the grader's own process."""

    student: str
    path: Path | None  # the notebook graded (None: the student's folder has none)
    shown: str = ""  # its path relative to the submissions folder, for the CSV
    cells: list[tuple[int, str]] = field(default_factory=list)  # (cell number, code)
    problem: str = ""  # why it cannot be graded ("" if it can)
    notes: list[str] = field(default_factory=list)

    @property
    def code(self) -> str:
        return "\n".join(source for _, source in self.cells)


def read_submission(student: str, path: Path, folder: Path) -> Submission:
    sub = Submission(student, path, path.relative_to(folder).as_posix())
    try:
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            sub.problem = f"the file is larger than {MAX_NOTEBOOK_BYTES >> 20} MB; clear the outputs and submit again."
            return sub
        sub.cells = notebook_code(json.loads(path.read_text(encoding="utf-8", errors="replace")))
    except Exception as e:
        sub.problem = (f"the file is not a readable notebook ({type(e).__name__}: {_first_line(e)}); open it in "
                       f"Jupyter or Colab, save it, and submit it again.")
    return sub


def notebook_code(content) -> list[tuple[int, str]]:
    """(cell number, source) of the code cells of a notebook's JSON. Lenient on purpose: a notebook that a
    tool saved with missing metadata is still graded; only the cells' type and source are needed."""
    if isinstance(content, dict) and "worksheets" in content:  # nbformat 3: let nbformat convert it
        import nbformat  # here only: importing it costs a second, which every command would pay

        content = nbformat.reads(json.dumps(content), as_version=4)
    if not isinstance(content, dict) or not isinstance(content.get("cells"), list):
        raise ValueError("no list of cells")
    cells = []
    for k, cell in enumerate(content["cells"]):
        source = cell.get("source", "") if isinstance(cell, dict) else ""
        source = "".join(source) if isinstance(source, list) else source
        if isinstance(cell, dict) and cell.get("cell_type") == "code" and isinstance(source, str):
            cells.append((k + 1, source))
    return cells


def find_submissions(folder: str | Path, skip: tuple[Path, ...] = ()) -> list[tuple[str, list[Path]]]:
    """(student, candidate notebooks): each notebook directly in `folder` is a student (named after the file);
    each sub-folder is a student (named after the folder) with the notebooks anywhere inside it."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix == ".ipynb":
        return [(folder.stem, [folder])]
    if not folder.is_dir():
        raise GanlibError(f"{str(folder)!r} is not a folder: pass the folder that holds the submitted notebooks.")
    skip = tuple(p.resolve() for p in skip)
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith((".", "__")) or entry.resolve() in skip:
            continue
        if entry.is_file() and entry.suffix == ".ipynb":
            found.append((entry.stem, [entry]))
        elif entry.is_dir():
            notebooks = sorted(p for p in entry.rglob("*.ipynb")  # not checkpoints, not __MACOSX copies
                               if not any(part.startswith((".", "__")) for part in p.relative_to(entry).parts))
            found.append((entry.name, notebooks))
    if not found:
        raise GanlibError(f"no notebooks in {str(folder)!r}: put one notebook per student (any file name), or one "
                          f"folder per student, in it.")
    return found


def collect(folder: str | Path, chapter: Chapter | None, chapters: list[Chapter],
            skip: tuple[Path, ...] = ()) -> tuple[Chapter, list[Submission]]:
    """Read every submission, decide the chapter (given, or the one most submissions look like), and pick
    each student's notebook for it."""
    folder = Path(folder)
    root = folder.parent if folder.is_file() else folder
    candidates = [(student, [read_submission(student, p, root) for p in paths])
                  for student, paths in find_submissions(folder, skip)]
    if chapter is None:
        if len(chapters) == 1:
            chapter = chapters[0]
        else:
            votes = Counter(best.name for _, subs in candidates for best in
                            [_best_of(chapters, subs)] if best is not None)
            top = votes.most_common(2)
            if not top or (len(top) > 1 and top[0][1] == top[1][1]):
                names = ", ".join(c.name for c in chapters) or "none found"
                raise GanlibError(f"cannot tell which chapter {str(folder)!r} holds (chapters: {names}): pass "
                                  f"--chapter NN, or the chapter's exercise notebook.")
            chapter = next(c for c in chapters if c.name == top[0][0])
    submissions = []
    for student, subs in candidates:
        if not subs:
            submissions.append(Submission(student, None, problem="no notebook (.ipynb) in the student's folder."))
            continue
        readable = [s for s in subs if not s.problem] or subs
        best = max(readable, key=lambda s: (match(chapter, s.code), _mtime(s.path), str(s.path)))
        for other in subs:
            if other is not best:
                best.notes.append(f"`{other.path.name}` was not graded: only one notebook per student is.")
        looks_like = _best_of(chapters, [best]) if not best.problem else None
        if looks_like is not None and looks_like.name != chapter.name:
            best.notes.append(f"this notebook looks like chapter {looks_like.name}, but was graded as {chapter.name}.")
        submissions.append(best)
    _unique_names(submissions)
    return chapter, submissions


def _best_of(chapters: list[Chapter], subs: list[Submission]) -> Chapter | None:
    best = [b for s in subs if not s.problem for b in [best_chapter(chapters, s.code)] if b is not None]
    return Counter(best).most_common(1)[0][0] if best else None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _unique_names(submissions: list[Submission]) -> None:
    seen: Counter = Counter()
    for sub in submissions:
        seen[sub.student] += 1
        if seen[sub.student] > 1:
            sub.student = f"{sub.student} ({seen[sub.student]})"


# ----------------------------------------------------------------------------------------------------------
# Running submissions: a child process each, with limits


@dataclass
class Outcome:
    """One column of one student's row."""

    column: str  # the exercise's name, or "extra:<name>" for an instructor's private check
    passed: bool
    message: str
    seconds: float = 0.0

    @property
    def points(self) -> int:
        return int(self.passed)


@dataclass
class Graded:
    """A graded submission: its row of the CSV and its feedback."""

    student: str
    notebook: str  # the file graded, relative to the submissions folder
    status: str  # one of STATUSES
    outcomes: list[Outcome]
    notes: list[str]
    output: str = ""  # the beginning of what the submission printed
    output_chars: int = 0  # how much it printed in all
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(o.points for o in self.outcomes)


@dataclass(frozen=True)
class PrivateChecks:
    """An instructor's private checks: a Python file with functions `check_<exercise>(fn) -> CheckResult`,
    written like those in ganlib.checks (e.g. with `checks.run_check`), kept out of the public repository."""

    path: Path
    checks: dict  # exercise name -> check function

    @classmethod
    def load(cls, path: str | Path) -> PrivateChecks:
        import importlib.util

        path = Path(path).resolve()
        if not path.is_file():
            raise GanlibError(f"--extra-checks {str(path)!r} does not exist: pass a Python file of check functions.")
        spec = importlib.util.spec_from_file_location(f"ganlib_private_checks_{abs(hash(str(path)))}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise GanlibError(f"--extra-checks {str(path)!r} failed to load ({type(e).__name__}: {_first_line(e)}): "
                              f"fix the file.") from None
        found = {m.group(1): fn for name, fn in vars(module).items() if callable(fn) and (m := _CHECK_CALL.match(name))
                 and getattr(fn, "__module__", "") == module.__name__}
        return cls(path, found)

    def require(self, chapter: Chapter) -> None:
        """Fail early when the file checks none of the chapter's exercises (a misnamed function, or the wrong file)."""
        if not any(e.name in self.checks for e in chapter.exercises):
            names = ", ".join(f"check_{e.name}" for e in chapter.exercises)
            raise GanlibError(f"--extra-checks {str(self.path)!r} defines no check for chapter {chapter.name}: name "
                              f"the functions after its exercises ({names}).")


def columns(chapter: Chapter, private: PrivateChecks | None = None) -> list[str]:
    """The CSV's exercise columns: the chapter's exercises, then the private checks that apply."""
    extra = private.checks if private else {}
    return [e.name for e in chapter.exercises] + [f"extra:{e.name}" for e in chapter.exercises if e.name in extra]


def run(submissions: list[tuple[Submission, Chapter]], timeout: float = DEFAULT_TIMEOUT, jobs: int | None = None,
        memory_mb: int = DEFAULT_MEMORY_MB, private: PrivateChecks | None = None,
        on_done: Callable[[Graded], None] | None = None) -> list[Graded]:
    """Grade each (submission, chapter) in a child process of its own, `jobs` at a time; results in order."""
    import multiprocessing
    from multiprocessing.connection import wait

    jobs = max(1, jobs or os.cpu_count() or 1)
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":  # the server imports torch and the checks once; every child is a fork of it
        ctx.set_forkserver_preload(["ganlib.grading", "torch._dynamo"])  # torch.optim imports _dynamo lazily
    results: list[Graded | None] = [None] * len(submissions)
    pending = list(enumerate(submissions))[::-1]
    running: dict = {}  # sentinel -> (index, process, workdir, started, deadline)
    scratch = Path(tempfile.mkdtemp(prefix="ganlib-grading-"))
    try:
        while pending or running:
            while pending and len(running) < jobs:
                i, (sub, chapter) = pending.pop()
                if sub.problem:
                    results[i] = _not_run(sub, chapter, private)
                    if on_done:
                        on_done(results[i])
                    continue
                workdir = scratch / f"{i:04d}"
                workdir.mkdir()
                spec = dict(cells=sub.cells, exercises=[(e.name, e.call) for e in chapter.exercises],
                            private=str(private.path) if private else None, workdir=str(workdir),
                            timeout=timeout, memory_mb=memory_mb)
                process = ctx.Process(target=_child, args=(spec,), daemon=True)
                process.start()  # the first start waits for the server to import torch: not counted
                started = time.time()
                running[process.sentinel] = (i, process, workdir, started, started + timeout + 1.0)
            if not running:
                continue
            soonest = min(deadline for *_, deadline in running.values())
            ready = wait(list(running), timeout=max(0.0, soonest - time.time()))
            now = time.time()
            for sentinel in list(running):
                i, process, workdir, started, deadline = running[sentinel]
                if sentinel not in ready and now < deadline:
                    continue
                killed = sentinel not in ready
                _kill(process)
                del running[sentinel]
                sub, chapter = submissions[i]
                results[i] = _collect(sub, chapter, private, workdir, process.exitcode, killed, timeout, now - started)
                shutil.rmtree(workdir, ignore_errors=True)
                if on_done:
                    on_done(results[i])
    finally:
        for _, process, *_ in running.values():
            _kill(process)
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def _kill(process) -> None:
    """Kill the child and everything it started (it leads its own session), then reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (AttributeError, ProcessLookupError, PermissionError, OSError):
        process.kill()
    process.join()


def _not_run(sub: Submission, chapter: Chapter, private: PrivateChecks | None) -> Graded:
    status = "missing" if sub.path is None else "invalid"
    outcomes = [Outcome(c, False, "not graded: " + sub.problem) for c in columns(chapter, private)]
    return Graded(sub.student, sub.shown, status, outcomes, list(sub.notes))


def _collect(sub: Submission, chapter: Chapter, private: PrivateChecks | None, workdir: Path, exitcode: int | None,
             killed: bool, timeout: float, seconds: float) -> Graded:
    """Turn the child's event log (one JSON object per line) into the submission's outcomes."""
    events = []
    log = workdir / "events.jsonl"
    for line in log.read_text(errors="replace").splitlines() if log.is_file() else []:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    results = {e.get("column"): e for e in events if e.get("event") == "result"}
    started = {e.get("column") for e in events if e.get("event") == "start"}
    notes = [*sub.notes, *(str(e.get("note")) for e in events if e.get("event") == "note")]
    done = next((e for e in events if e.get("event") == "done"), None)
    if killed:
        why = f"the submission's time limit ({timeout:g} s) ran out"
    elif exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = str(-exitcode)
        why = f"the grading process was killed by signal {name} (a crash, or the memory limit)"
    else:
        why = f"the grading process ended with exit code {exitcode} (does the code call exit()?)"
    outcomes = []
    for column in columns(chapter, private):
        if column in results:
            e = results[column]
            outcomes.append(Outcome(column, bool(e.get("passed")), str(e.get("message")), float(e.get("seconds", 0))))
        elif column in started and killed:
            outcomes.append(Outcome(column, False, f"timeout: {why} while this exercise was being checked; look "
                                                   f"for an endless loop."))
        elif column in started:
            outcomes.append(Outcome(column, False, f"crashed: {why} while this exercise was being checked."))
        else:
            outcomes.append(Outcome(column, False, f"not run: {why} before this exercise was checked."))
    if done is None and not killed:
        notes.append(f"grading stopped early: {why}.")
    timed_out = killed or any(o.message.startswith("timeout") for o in outcomes)
    status = "timeout" if timed_out else "ok" if done is not None else "crashed"
    output, size = _read_head(workdir / "output.txt", OUTPUT_KEPT)
    printed = done.get("printed") if done is not None else None
    return Graded(sub.student, sub.shown, status, outcomes, notes, output,
                  printed if isinstance(printed, int) else size, seconds)


def _read_head(path: Path, n: int) -> tuple[str, int]:
    try:
        with open(path, "rb") as f:
            return f.read(n).decode("utf-8", errors="replace"), os.fstat(f.fileno()).st_size
    except OSError:
        return "", 0


# ----------------------------------------------------------------------------------------------------------
# The child: extract the exercises from the cells and run the checks


class _TimeUp(BaseException):
    """Raised in the child when an exercise's share of the time limit is used up (not an Exception, so that
    the checks' and the student's `except Exception` do not swallow it). Its argument: the share in seconds."""


def _child(spec: dict) -> None:
    """Entry point of the child process. Results go to events.jsonl in its working folder, one per line."""
    deadline = time.time() + spec["timeout"]
    workdir = Path(spec["workdir"])
    events = open(workdir / "events.jsonl", "a", buffering=1, encoding="utf-8")

    def emit(**event) -> None:
        events.write(json.dumps(event) + "\n")

    out = _isolate(workdir, deadline, spec["memory_mb"])
    try:
        module, notes, broken = _define(spec["cells"], [call for _, call in spec["exercises"]], deadline,
                                        1 + len(spec["exercises"]))
    except Exception as e:  # e.g. code nested too deeply for the parser
        module, notes, broken = None, [f"the grader could not read the notebook's code ({type(e).__name__})."], {}
    for note in notes:
        emit(event="note", note=note)
    extra = PrivateChecks.load(spec["private"]).checks if spec["private"] else {}
    phases = [(name, call, checks.CHECKS[name]) for name, call in spec["exercises"]]
    phases += [(f"extra:{name}", call, extra[name]) for name, call in spec["exercises"] if name in extra]
    for k, (column, call, check) in enumerate(phases):
        emit(event="start", column=column)
        start = time.time()
        try:
            with _time_share(deadline, len(phases) - k):
                passed, message = _check_one(check, call, module, broken)
        except _TimeUp as e:
            passed, message = False, (f"timeout: did not finish within its share of the time limit ({e.args[0]:.1f} "
                                      f"s); look for an endless loop, or far more computation than the exercise "
                                      f"needs.")
        except SystemExit as e:
            passed, message = False, f"your code called exit() (SystemExit {e.code}): an exercise must return."
        except BaseException as e:  # KeyboardInterrupt, or a failure of the check itself
            passed, message = False, f"the check stopped: {type(e).__name__}: {_first_line(e)}"
        emit(event="result", column=column, passed=passed, message=message, seconds=round(time.time() - start, 3))
    emit(event="done", printed=out.chars)
    events.close()
    os._exit(0)  # no atexit handlers, no waiting for threads the submission started


def _isolate(workdir: Path, deadline: float, memory_mb: int) -> _CappedOutput:
    """Cut the child off: own session, own folder, output to a capped file, limits, one thread, no GPU."""
    import torch

    from .env import seed_everything

    if hasattr(os, "setsid"):
        try:
            os.setsid()
        except OSError:
            pass
    os.chdir(workdir)
    fd = os.open(workdir / "output.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdin = open(os.devnull)
    out = _CappedOutput(os.fdopen(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False))
    sys.stdout = sys.stderr = out
    keep = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "GANLIB_CACHE", "GANLIB_DATA",
            "MPLCONFIGDIR", "XDG_CACHE_HOME", "TORCH_HOME", "PYTHONPATH", "VIRTUAL_ENV", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    os.environ.clear()
    os.environ.update(env, GANLIB_PROFILE="smoke", GANLIB_OFFLINE="1", MPLBACKEND="Agg", CUDA_VISIBLE_DEVICES="",
                      OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    try:
        import resource

        def limit(kind, value):
            try:
                resource.setrlimit(kind, (value, value))
            except (ValueError, OSError):
                pass  # not supported here (e.g. RLIMIT_AS on macOS)

        limit(resource.RLIMIT_CORE, 0)
        limit(resource.RLIMIT_FSIZE, FILE_SIZE_LIMIT)
        limit(resource.RLIMIT_CPU, int(max(1, deadline - time.time())) + 5)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        in_use = _address_space()
        if in_use:
            limit(resource.RLIMIT_AS, in_use + memory_mb * 2**20)
    except ImportError:  # Windows: no resource limits, only the time limit
        pass
    torch.set_num_threads(1)
    seed_everything(0)
    return out


def _address_space() -> int:
    """Bytes of virtual memory this process maps now (Linux), or 0 when unknown."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class _CappedOutput(io.TextIOBase):
    """sys.stdout and sys.stderr of a submission: keeps the first OUTPUT_KEPT characters, counts the rest."""

    def __init__(self, stream):
        self.stream, self.chars = stream, 0

    def write(self, s: str) -> int:
        room = OUTPUT_KEPT - self.chars
        if room > 0:
            self.stream.write(s[:room])
        self.chars += len(s)
        return len(s)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return False


class _time_share:
    """Context manager: interrupt the block with _TimeUp after an equal share of the time that is left."""

    def __init__(self, deadline: float, parts: int):
        self.seconds = max(0.01, (deadline - 1.0 - time.time()) / max(1, parts))

    def __enter__(self):
        if hasattr(signal, "setitimer"):
            self.previous = signal.signal(signal.SIGALRM, self._raise)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        if hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)

    def _raise(self, signum, frame):
        raise _TimeUp(self.seconds)


def _parse(source: str, filename: str = "<cell>") -> tuple[ast.Module | None, SyntaxError | None]:
    """Parse a cell's source as Python; IPython syntax (%magic, !shell, a leading %%magic line) is removed."""
    if source.lstrip().startswith("%%"):
        source = "\n" + source.lstrip().split("\n", 1)[-1] if "\n" in source.lstrip() else ""
    try:
        return ast.parse(source, filename), None
    except SyntaxError as error:
        try:
            from IPython.core.inputtransformer2 import TransformerManager

            return ast.parse(TransformerManager().transform_cell(source), filename), None
        except Exception:
            return None, error


def _define(cells: list[tuple[int, str]], calls: list[str], deadline: float,
            parts: int) -> tuple[object, list[str], dict[str, str]]:
    """Define the notebook's functions, classes, literal constants and the imports they use in a fresh module.

    Returns the module, notes for the feedback (syntax errors, failed imports), and for each name defined in
    a cell that could not be parsed, where that cell is."""
    import linecache
    import types

    module = types.ModuleType("submission")
    sys.modules["submission"] = module
    notes, broken, kept, sources = [], {}, [], {}
    wanted = {node.id for call in calls for node in ast.walk(ast.parse(call, mode="eval"))
              if isinstance(node, ast.Name)}
    for number, source in cells:
        filename = f"<cell {number}>"
        tree, error = _parse(source, filename)
        if tree is None:
            where = f"cell {number}, which has a syntax error at line {error.lineno} ({error.msg})"
            notes.append(f"cell {number} has a syntax error at line {error.lineno} ({error.msg}); the grader "
                         f"skipped that cell.")
            for name in re.findall(r"^\s*(?:async\s+)?(?:def|class)\s+(\w+)", source, re.M):
                broken[name] = where
            continue
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # for tracebacks
        sources[filename] = source
        flags = 0
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                import __future__

                for alias in node.names:
                    flags |= getattr(getattr(__future__, alias.name, None), "compiler_flag", 0)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
                kept.append((filename, flags, node))
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if all(isinstance(t, ast.Name) for t in targets) and (
                        _is_literal(node.value) or any(t.id in wanted for t in targets)):
                    kept.append((filename, flags, node))
    used = wanted | {n.id for _, _, node in kept if not isinstance(node, (ast.Import, ast.ImportFrom))
                     for n in ast.walk(node) if isinstance(n, ast.Name)}
    try:
        with _time_share(deadline, parts):
            for filename, flags, node in kept:
                if isinstance(node, (ast.Import, ast.ImportFrom)) and not _binds(node, used):
                    continue  # an import no exercise needs (plotting, widgets): skipped, it only costs time
                try:
                    code = compile(ast.Module(body=[node], type_ignores=[]), filename, "exec", flags=flags,
                                   dont_inherit=True)
                    exec(code, module.__dict__)
                except Exception as e:
                    text = ast.get_source_segment(sources[filename], node) or "?"
                    notes.append(f"{filename.strip('<>')}, line {node.lineno}: `{text.splitlines()[0][:80]}` raised "
                                 f"{type(e).__name__}: {_first_line(e)}")
    except _TimeUp:
        notes.append("defining the notebook's functions and classes took too long (a class body or decorator "
                     "that loops?); the exercises defined after that point are missing.")
    return module, notes, broken


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def _binds(node: ast.Import | ast.ImportFrom, used: set[str]) -> bool:
    """Whether an import binds a name that the kept code uses (`import *` always counts)."""
    for alias in node.names:
        if alias.name == "*":
            return True
        bound = alias.asname or (alias.name.split(".")[0] if isinstance(node, ast.Import) else alias.name)
        if bound in used:
            return True
    return False


def _check_one(check: Callable, call: str, module, broken: dict[str, str]) -> tuple[bool, str]:
    """Evaluate what the check is given (e.g. the student's `train_step`), and run the check on it."""
    if module is None:
        return False, "not graded: the grader could not read the notebook's code."
    try:
        target = eval(compile(call, "<grader>", "eval"), module.__dict__)
    except NameError as e:
        missing = getattr(e, "name", None) or call
        if missing in broken:
            return False, f"`{missing}` is in {broken[missing]}: fix it, run the cell, and run the check again."
        defined = [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                   and getattr(v, "__module__", None) == "submission"]
        close = difflib.get_close_matches(missing, defined, n=1, cutoff=0.6)
        hint = f" (did you rename it to `{close[0]}`?)" if close else ""
        return False, (f"your notebook defines no `{missing}`{hint}: the grader looks for a function or class "
                       f"named `{missing}` at the top level of a cell; keep the exercise's name.")
    except Exception as e:
        return False, f"`{call}` could not be evaluated: {type(e).__name__}: {_first_line(e)}"
    result = check(target)
    passed, message = (result, "passed." if result else "failed.") if isinstance(result, bool) else (
        bool(result.passed), str(result.message))
    if not passed and "raised NameError" in message:
        message += (" The grader runs each exercise with only the notebook's imports, functions, classes and "
                    "constants: compute anything else inside the function, or take it as an argument.")
    return passed, message


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


# ----------------------------------------------------------------------------------------------------------
# Reports: the CSV and the feedback files


def write_csv(path: str | Path, graded: list[Graded], cols: list[str]) -> None:
    from .files import atomic_write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", *cols, "total", "max", "status", "notebook"])
    for g in sorted(graded, key=lambda g: g.student.lower()):
        points = {o.column: o.points for o in g.outcomes}
        writer.writerow([g.student, *(points.get(c, 0) for c in cols), g.total, len(cols), g.status, g.notebook])
    atomic_write_text(buffer.getvalue(), path)


def feedback(g: Graded, chapter: Chapter) -> str:
    """The markdown feedback of one submission: points, each check's message, notes, and printed output."""
    lines = [f"# {chapter.name}: feedback for {g.student}", "",
             f"**{g.total} of {len(g.outcomes)} points** · notebook `{g.notebook or '(none)'}` · status: {g.status}",
             "", "| exercise | points | result |", "|---|---|---|"]
    lines += [f"| `{o.column}` | {o.points} | {'passed' if o.passed else 'not yet'} |" for o in g.outcomes]
    if g.status in ("invalid", "missing"):  # nothing ran: say why once
        lines += ["", g.outcomes[0].message[0].upper() + g.outcomes[0].message[1:]]
    else:
        for o in g.outcomes:
            lines += ["", f"## `{o.column}`: {'passed' if o.passed else 'not yet'}", "", o.message]
    if g.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in g.notes]
    if g.output_chars:
        shown = g.output[:OUTPUT_SHOWN]
        fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", shown)), default=0))
        lines += ["", "## What your code printed", "", f"{fence}text", shown.rstrip("\n"), fence]
        if g.output_chars > len(shown):
            lines.append(f"(the first {len(shown):,} of {g.output_chars:,} characters)")
    lines += ["", "---", "How this was graded: each exercise was checked on its own, with your notebook's "
              "functions, classes and the imports they use (cells that only compute or train were not run). "
              "Run the check cell below each exercise to see the same messages."]
    return "\n".join(lines) + "\n"


def feedback_name(student: str) -> str:
    return (re.sub(r"[^\w.-]+", "_", student).strip("._") or "student") + ".md"


# ----------------------------------------------------------------------------------------------------------
# The command


def grade(folder: str | Path, out: str | Path, chapter: str | None = None, timeout: float = DEFAULT_TIMEOUT,
          jobs: int | None = None, extra_checks: str | Path | None = None, feedback_dir: str | Path | None = None,
          memory_mb: int = DEFAULT_MEMORY_MB, log: Callable[[str], None] = print) -> list[Graded]:
    """`python -m ganlib grade`: grade every submission in `folder`, write the CSV `out` and the feedback files
    (default: a folder beside the CSV, `<out stem>-feedback/`)."""
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise GanlibError(f"--out {str(out)!r}: the grades file must end in .csv.")
    if timeout <= 0 or (jobs is not None and jobs < 1) or memory_mb < 64:
        raise GanlibError("--timeout must be positive, --jobs at least 1 and --memory at least 64 (MB).")
    feedback_dir = Path(feedback_dir) if feedback_dir else out.with_name(f"{out.stem}-feedback")
    known = course_chapters()
    chosen = find_chapter(chapter, known) if chapter else None
    chosen, submissions = collect(folder, chosen, known, skip=(feedback_dir, out))
    chosen.require_checks()
    private = PrivateChecks.load(extra_checks) if extra_checks else None
    if private:
        private.require(chosen)
    cols = columns(chosen, private)
    jobs = jobs or os.cpu_count() or 1
    log(f"grading {len(submissions)} submission(s) of {chosen.name} ({', '.join(cols)}) with {jobs} job(s), "
        f"at most {timeout:g} s each")
    width = max(len(s.student) for s in submissions)
    start = time.time()

    def done(g: Graded) -> None:
        log(f"  {g.student:<{width}}  {g.total}/{len(cols)}  {g.status:<8} {g.seconds:5.1f} s")

    graded = run([(s, chosen) for s in submissions], timeout=timeout, jobs=jobs, memory_mb=memory_mb,
                 private=private, on_done=done)
    write_csv(out, graded, cols)
    feedback_dir.mkdir(parents=True, exist_ok=True)
    for g in graded:
        (feedback_dir / feedback_name(g.student)).write_text(feedback(g, chosen), encoding="utf-8")
    counts = Counter(g.status for g in graded)
    mean = sum(g.total for g in graded) / len(graded)
    log(f"graded {len(graded)} submission(s) in {time.time() - start:.0f} s: mean {mean:.2f} of {len(cols)}; "
        + ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])
        + f". Grades: {out}; feedback: {feedback_dir}/")
    return graded

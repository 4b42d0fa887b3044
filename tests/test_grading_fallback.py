"""The grader without namespaces (GANLIB_NAMESPACES=0, as in a container under Docker's default seccomp profile or
on a laptop that forbids them): it refuses to grade unless the instructor accepts weaker isolation, and then,
run by an ordinary user (this test drops from root to one, as the grader drops its submissions), it still keeps
the course, the other submissions, the private checks and the grades unreadable, cannot be signalled by a
submission, and leaves no daemon behind after a normal finish."""

import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from test_grading import EXERCISE, PRIVATE_CHECKS, ROOT, SOLUTION, code_cell, load, save
from test_grading_attacks import attacker

from gancourse import grading
from gancourse.grading import linux, runner

USER = 65534  # nobody
SECRET, OTHER, SOLUTION_TEXT = "SECRET-PRIVATE-77ae", "OTHER-STUDENT-5d20", "### BEGIN SOLUTION"
DAEMON_TAG = f"FALLBACK-DAEMON-{uuid.uuid4().hex}"
EXERCISES = len(grading.read_chapter(SOLUTION).exercises)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0
                                or linux.landlock_abi() < 6,
                                reason="dropping to an ordinary user needs root, and the fallback needs Landlock 6")


def as_ordinary_user():
    """In the child, before exec: a private mount namespace in which the folders holding Python stay reachable
    for other users (as they are on most machines), then the user id and group of `nobody`."""
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    linux._expose(runner.keep_visible())
    os.setgroups([])
    os.setgid(USER)
    os.setuid(USER)


def grade(folder: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GANLIB_NAMESPACES": "0", "HOME": str(out.parent),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "gancourse", "grade", str(folder), "--out", str(out),
                           "--timeout", "20", "--jobs", "2", "--extra-checks", str(out.parent / "private_checks.py"),
                           *flags],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          preexec_fn=as_ordinary_user)


def daemons() -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if DAEMON_TAG.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def fallback():
    home = Path(tempfile.mkdtemp(prefix="ganlib-fallback-"))
    try:
        folder, out = home / "submissions", home / "grades.csv"
        (home / "private_checks.py").write_text(PRIVATE_CHECKS + f"\n# {SECRET}\n")
        good = load(SOLUTION)
        good["cells"].insert(1, code_cell(f"# {OTHER}"))
        save(good, folder / "good1.ipynb")
        save(load(SOLUTION), folder / "good2.ipynb")
        secrets = [str(home / "private_checks.py"), str(SOLUTION), str(folder / "good1.ipynb"), str(out),
                   str(ROOT / "solutions")]
        save(attacker(f"""
            import os
            seen = []
            for p in {secrets!r}:
                try:
                    seen.append(p + ": " + (",".join(os.listdir(p)) if os.path.isdir(p) else open(p).read(300)))
                except OSError as e:
                    seen.append(p + ": " + type(e).__name__)
            print("SEEN " + " | ".join(seen).replace("\\\\n", " "))
        """), folder / "reader.ipynb")
        save(attacker(f"""
            import os, subprocess, sys
            script = "import time; time.sleep(60)"
            subprocess.Popen([sys.executable, "-c", script, {DAEMON_TAG!r}], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execv(sys.executable, [sys.executable, "-c", script, {DAEMON_TAG!r}])
                os._exit(0)
        """), folder / "daemon.ipynb")
        save(attacker("import os, signal\nos.kill(-1, signal.SIGKILL)"), folder / "killer.ipynb")
        save(load(EXERCISE), folder / "untouched.ipynb")
        shutil.chown(home, USER, USER)
        for path in home.rglob("*"):
            shutil.chown(path, USER, USER)
        refused = grade(folder, out)
        start = time.perf_counter()
        done = grade(folder, out, "--weaker-isolation")
        seconds = time.perf_counter() - start
        time.sleep(1)
        alive = daemons()
        rows = {r["student"]: r for r in csv.DictReader(out.open())} if out.exists() else {}
        feedback = {p.stem: p.read_text() for p in (home / "grades-feedback").glob("*.md")}
        yield dict(refused=refused, done=done, rows=rows, feedback=feedback, alive=alive, seconds=seconds)
    finally:
        for pid in daemons():
            os.kill(int(pid), 9)
        shutil.rmtree(home, ignore_errors=True)


def test_without_namespaces_it_refuses_in_one_line(fallback):
    refused = fallback["refused"]
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    line = [line for line in (refused.stdout + refused.stderr).splitlines() if line.strip()]
    assert len(line) == 1, line
    assert "GANLIB_NAMESPACES=0" in line[0] and "seccomp=unconfined" in line[0] and "--weaker-isolation" in line[0]


def test_with_weaker_isolation_everyone_is_graded_honestly(fallback):
    done, rows = fallback["done"], fallback["rows"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "confinement: WEAKER ISOLATION, no namespaces (GANLIB_NAMESPACES=0 turned them off)" in done.stdout
    full = str(EXERCISES + 1)  # and the private check
    totals = {name: rows[name]["total"] for name in ("good1", "good2", "reader", "daemon", "killer", "untouched")}
    assert totals == {"good1": full, "good2": full, "reader": "0", "daemon": "0", "killer": "0", "untouched": "0"}


def test_nothing_of_the_instructor_is_readable(fallback):
    reader = fallback["feedback"]["reader"]
    assert "SEEN" in reader and reader.count("PermissionError") == 5, reader
    for name, text in fallback["feedback"].items():
        for secret in (SECRET, OTHER, SOLUTION_TEXT):
            assert secret not in text, (name, secret)


def test_no_daemon_outlives_a_normal_finish(fallback):
    assert fallback["alive"] == []


def test_every_chapters_solution_imports_what_it_needs():
    """Chapter 05's solution imports scipy.linalg, which reads the standard library's files: Landlock lets
    the submission read Python's own folders, so the reference solution gets every point here too."""
    home = Path(tempfile.mkdtemp(prefix="ganlib-fallback-05-"))
    try:
        save(load(ROOT / "solutions" / "05_evaluation.ipynb"), home / "submissions" / "reference.ipynb")
        (home / "private_checks.py").write_text("def check_frechet_distance(fn):\n    return True\n")
        for path in [home, *home.rglob("*")]:
            shutil.chown(path, USER, USER)
        done = grade(home / "submissions", home / "grades.csv", "--weaker-isolation")
        assert done.returncode == 0, done.stdout + done.stderr
        row = next(csv.DictReader((home / "grades.csv").open()))
        assert row["total"] == row["max"], (row, (home / "grades-feedback" / "reference.md").read_text())
    finally:
        shutil.rmtree(home, ignore_errors=True)

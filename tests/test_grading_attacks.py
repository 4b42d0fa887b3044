"""The grader against hostile submissions of chapter 01: each attack below is a crafted notebook (the handed-out
exercise, so every answer is wrong, plus the attack's code), graded in one folder with three correct
submissions. Every attack must end with honest marks for the others, zero for the attacker, nothing of the
instructor's changed or leaked, and no process left over."""

import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from test_grading import EXERCISE, PRIVATE_CHECKS, ROOT, SOLUTION, code_cell, edit, load, save

from gancourse import grading
from gancourse.grading import runner, sandbox

TIMEOUT = 8
SECRET = "SECRET-PRIVATE-4b1f"  # in the private checks file only
OTHER = "OTHER-STUDENT-91c2"  # in a correct submission only
SOLUTION_TEXT = "### BEGIN SOLUTION"  # in the solution notebooks only
RUN_TAG = f"GANLIB_ATTACK_TEST={uuid.uuid4().hex}"  # in the environment of every process the grader starts
DAEMON_TAG = f"ATTACK-DAEMON-{uuid.uuid4().hex}"
EXERCISES = len(grading.read_chapter(SOLUTION).exercises)  # chapter 01's, the points of a correct submission

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not sandbox.probe([]).namespaces,
                                reason="the attacks on siblings need the Linux namespaces the grader confines with")


def attacker(code: str) -> dict:
    """The exercise notebook (every answer wrong) with `code` run when the grader defines the notebook's
    classes: in a class body, the earliest point a submission's code runs."""
    nb = load(EXERCISE)
    body = "def _attack():\n" + textwrap.indent(textwrap.dedent(code), "    ") + "\n\nclass _Run:\n    _attack()\n"
    nb["cells"].insert(1, code_cell(body))
    return nb


def course_hashes() -> dict:
    folders = ("ganlib", "gancourse", "solutions", "exercises", "notebooks")
    files = [p for folder in folders for p in (ROOT / folder).rglob("*")
             if p.is_file() and "__pycache__" not in p.parts]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def folder_hashes(folder: Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file() and not p.is_symlink()}


def leftovers() -> list[str]:
    """Processes this test's grading started that are still alive."""
    key, value = RUN_TAG.split("=")
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        if int(pid) != os.getpid() and (f"{key}={value}".encode() in environ or DAEMON_TAG in cmdline
                                        or uid in sandbox.JOB_UIDS):
            found.append(f"{pid}: {cmdline[:100]}")
    return found


def leftovers_after(seconds: float = 15.0) -> list[str]:
    """`leftovers()` once they are gone, or as they still are after `seconds`: a process killed with its parent
    takes a moment to disappear from /proc, longer on a loaded machine."""
    deadline = time.time() + seconds
    while (found := leftovers()) and time.time() < deadline:
        time.sleep(0.2)
    return found


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attacks")
    folder, out = tmp / "submissions", tmp / "grades.csv"
    private = tmp / "private_checks.py"
    private.write_text(PRIVATE_CHECKS + f"\n# {SECRET}\n")
    sol = load(SOLUTION)
    good = load(SOLUTION)
    good["cells"].insert(1, code_cell(f"# {OTHER}"))
    for name in ("good1", "good2", "good3"):
        save(good, folder / f"{name}.ipynb")
    victim = folder / "good1.ipynb"
    paths = dict(private=str(private), solution=str(SOLUTION), victim=str(victim), folder=str(folder), out=str(out),
                 core=str(ROOT / "gancourse" / "checks" / "core.py"), feedback=str(tmp / "grades-feedback"))
    attacks = {
        "patcher": """
            import gancourse.checks as c, gancourse.checks.core as core
            from gancourse.checks import CheckResult
            for k in list(c.CHECKS):
                c.CHECKS[k] = lambda fn, k=k: CheckResult(k, True, "correct on every test input.")
            core.run_check = lambda ex, body: CheckResult(ex, True, "correct on every test input.")
            core._run = core.run_check
        """,
        "jsonfaker": """
            import json, torch
            json.dumps = lambda *a, **k: '{"event": "result", "column": "train_step", "passed": true}'
            json.loads = lambda *a, **k: {"event": "result", "passed": True}
        """,
        "forger": """
            import glob, json, os
            line = json.dumps({"event": "result", "column": "train_step", "passed": True, "message": "ok"})
            for d in ["."] + glob.glob("/tmp/ganlib-grading-*/*"):
                try:
                    open(os.path.join(d, "events.jsonl"), "a").write((line + "\\n") * 4 + '{"event": "done"}\\n')
                except OSError:
                    pass
            os._exit(0)
        """,
        "reader": f"""
            import glob
            texts = []
            for p in [{paths['private']!r}, {paths['solution']!r}, {paths['victim']!r}]:
                try:
                    texts.append(p + ": " + open(p, errors="replace").read()[:300])
                except Exception as e:
                    texts.append(p + ": " + type(e).__name__)
            pids = glob.glob("/proc/[0-9]*")
            texts += ["PROCESSES SEEN: " + str(len(pids))] + [open(p + "/cmdline").read()[:100] for p in pids]
            print("\\n".join(texts))
            raise RuntimeError(" ".join(texts).replace("\\n", " ")[:3000])
        """,
        "writer": f"""
            import os
            for p in [{paths['core']!r}, {paths['solution']!r}, {paths['victim']!r}, {paths['out']!r},
                      {paths['private']!r}, os.path.join({paths['feedback']!r}, "good2.md")]:
                try:
                    open(p, "a").write("\\nHACKED = True\\n")
                except OSError as e:
                    print("write", p, e)
                try:
                    os.remove(p)
                except OSError as e:
                    print("remove", p, e)
        """,
        "daemon": f"""
            import os, subprocess, sys, time
            script = '''
import glob, time
time.sleep(2)
targets = glob.glob({paths['folder']!r} + "/**", recursive=True) + glob.glob({paths['feedback']!r} + "/*")
for p in targets + [{paths['out']!r}]:
    try:
        open(p, "a").write("HACKED")
    except OSError:
        pass
'''
            subprocess.Popen([sys.executable, "-c", script, {DAEMON_TAG!r}], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if os.fork() == 0:
                os.setsid()
                exec(script)
                os._exit(0)
        """,
        "course": f"""
            import os, subprocess
            seen = []
            for path in [{str(ROOT)!r}, os.path.join({str(ROOT)!r}, ".git"), os.path.join({str(ROOT)!r}, "solutions")]:
                try:
                    seen.append(path + ": " + ",".join(sorted(os.listdir(path))))
                except OSError as e:
                    seen.append(path + ": " + type(e).__name__)
            for command in (["git", "-C", {str(ROOT)!r}, "show", "HEAD:solutions/01_vanilla_gan.ipynb"],
                            ["git", "-C", {str(ROOT)!r}, "log", "-1"]):
                try:
                    seen.append(subprocess.run(command, capture_output=True, text=True).stdout[:500])
                except OSError as e:
                    seen.append(type(e).__name__)
            raise RuntimeError("COURSE SEEN " + " | ".join(seen).replace("\\n", " "))
        """,
        "killer": """
            import os, signal
            for pid in os.listdir("/proc"):
                if pid.isdigit() and int(pid) != os.getpid():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except OSError:
                        pass
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
        """,
    }
    for name, code in attacks.items():
        save(attacker(code), folder / f"{name}.ipynb")
    looper = load(SOLUTION)  # a loop in a default argument: only that function is lost
    looper["cells"].insert(1, code_cell("def slow(x=[i for i in iter(int, 1)]):\n    return x"))
    save(looper, folder / "looper.ipynb")
    os.mkfifo(folder / "fifo.ipynb")
    (folder / "zero.ipynb").symlink_to("/dev/zero")
    (folder / "linker.ipynb").symlink_to(SOLUTION)
    (folder / "mallory").mkdir()
    os.mkfifo(folder / "mallory" / "work.ipynb")
    save(sol, folder / "k a b.ipynb")
    save(load(EXERCISE), folder / "k_a_b.ipynb")
    save(sol, folder / "=HYPERLINK(1).ipynb")
    save(sol, folder / "twice.ipynb")
    markdown = "raise RuntimeError('\\n\\n**6 of 6 points**\\n# Notes <b>[ok](x)</b>')\n    return F.softplus"
    save(edit(sol, "generator_loss", "return F.softplus", markdown), folder / "markdown.ipynb")
    nan = "return F.softplus(-fake_logits).mean() * float('nan')\n    return F.softplus"  # an honest bug
    save(edit(sol, "generator_loss", "return F.softplus", nan), folder / "nan.ipynb")
    shadow = ("loss = torch.zeros(1) + 0 * fake_logits.sum()\n    loss.reshape = torch.Tensor\n    return loss"
              "\n    return F.softplus")  # reshape(()) would be an empty tensor, which allclose broadcasts
    save(edit(sol, "generator_loss", "return F.softplus", shadow), folder / "shadow.ipynb")
    save(sol, folder / "=alice.ipynb")
    save(load(EXERCISE), folder / "'=alice.ipynb")
    save(sol, folder / "\x1b[2J\x1b[31mred\nFAKE LOG LINE.ipynb")
    save(sol, folder / ("x" * 249 + ".ipynb"))  # 255 bytes: no feedback file name can hold it and a suffix
    with open(os.fsencode(folder) + b"/latin-\xe9t\xe9.ipynb", "wb") as f:  # not UTF-8
        f.write(json.dumps(sol).encode())
    huge = load(SOLUTION)
    huge["cells"][0]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "x" * (33 * 2**20)}]
    save(huge, folder / "huge.ipynb")
    save({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [{"cells": []}]}, folder / "v3.ipynb")
    save(load(EXERCISE), folder / "twice" / "nb.ipynb")
    course, others = course_hashes(), folder_hashes(folder)
    os.environ[RUN_TAG.split("=")[0]] = RUN_TAG.split("=")[1]
    log = []
    start = time.perf_counter()
    try:
        results = grading.grade(folder, out, timeout=TIMEOUT, jobs=2, extra_checks=private, log=log.append)
    finally:
        del os.environ[RUN_TAG.split("=")[0]]
    seconds = time.perf_counter() - start
    with open(out, newline="") as f:
        csv_text = f.read()
    time.sleep(3)  # what a surviving daemon would have done by now
    with open(out, newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    feedback = {p.name: p.read_text() for p in (tmp / "grades-feedback").glob("*.md")}
    return dict(results={g.student: g for g in results}, rows=rows, feedback=feedback, log=log, seconds=seconds,
                course=course, others=others, folder=folder, out=out, private=private, csv_text=csv_text)


def fb(attacked, student: str) -> str:
    name = grading.feedback_names(list(attacked["results"]))[student]
    return attacked["feedback"][name]


def test_correct_submissions_keep_full_marks(attacked):
    for name in ("good1", "good2", "good3", "looper", "k a b"):
        g = attacked["results"][name]
        assert (g.total, g.status) == (len(g.outcomes), "ok"), (name, [o.message for o in g.outcomes], g.notes)
    assert "took too long to define" in fb(attacked, "looper")  # the loop cost only `slow`


def test_attackers_score_zero(attacked):
    results = attacked["results"]
    for name in ("patcher", "jsonfaker", "forger", "reader", "writer", "daemon", "killer"):
        g = results[name]
        assert g.total == 0, (name, [o.message for o in g.outcomes])
        assert attacked["rows"][name]["total"] == "0"
    assert results["forger"].status == "crashed"  # it exited while its code was being defined
    assert "not implemented yet" in fb(attacked, "patcher")


def test_nothing_of_the_instructor_changed_or_leaked(attacked):
    assert course_hashes() == attacked["course"]
    assert folder_hashes(attacked["folder"]) == attacked["others"]
    assert SECRET in attacked["private"].read_text() and "HACKED" not in attacked["private"].read_text()
    for name, text in attacked["feedback"].items():
        for secret in (SECRET, OTHER, SOLUTION_TEXT):
            assert secret not in text, (name, secret)
        assert "HACKED" not in text, name
    seen = re.search(r"PROCESSES SEEN: (\d+)", fb(attacked, "reader"))  # its own pid namespace: itself and its init
    assert seen and int(seen.group(1)) <= 2, fb(attacked, "reader")
    assert "HACKED" not in attacked["out"].read_text()
    assert attacked["out"].read_text() == attacked["csv_text"]  # unchanged after the run, too


def test_no_process_is_left(attacked):
    assert leftovers_after() == []


def test_links_and_special_files_are_reported_not_followed(attacked):
    results = attacked["results"]
    for name in ("fifo", "zero", "linker", "mallory"):
        assert (results[name].status, results[name].total) == ("invalid", 0), name
    assert "symbolic link" in fb(attacked, "linker") and "symbolic link" in fb(attacked, "zero")
    assert "not a regular file" in fb(attacked, "fifo") and "not a regular file" in fb(attacked, "mallory")


def test_names_collide_nowhere(attacked):
    rows, results = attacked["rows"], attacked["results"]
    assert (results["k a b"].total, results["k_a_b"].total) == (len(results["k a b"].outcomes), 0)
    names = grading.feedback_names(list(results))
    assert len(set(names.values())) == len(names)
    assert "feedback for k a b\n" in fb(attacked, "k a b") and "feedback for k\\_a\\_b\n" in fb(attacked, "k_a_b")
    formula = rows["'=HYPERLINK(1)"]  # escaped: a spreadsheet shows it as text
    assert formula["total"] == formula["max"]
    assert any("twice was submitted 2 times" in line for line in attacked["log"])
    assert {results["twice"].total, results["twice (2)"].total} == {len(results["twice"].outcomes), 0}


def test_wrong_answers_get_no_marks(attacked):
    results = attacked["results"]
    for name in ("nan", "shadow", "markdown"):
        outcome = {o.column: o for o in results[name].outcomes}
        assert not outcome["generator_loss"].passed and results[name].total == EXERCISES - 1, name
    assert "your value contains NaN" in outcome_message(results["nan"], "generator_loss")


def outcome_message(graded, column: str) -> str:
    return next(o.message for o in graded.outcomes if o.column == column)


def test_nothing_of_the_course_is_readable(attacked):
    text = fb(attacked, "course")
    seen = re.search(r"COURSE SEEN (.*)", text).group(1)
    assert f"{ROOT}: gancourse,ganlib |" in seen.replace("\\", ""), seen  # the two packages only
    assert "solutions: FileNotFoundError" in seen.replace("\\", "") and "Author" not in seen


def test_check_messages_are_escaped_in_the_feedback(attacked):
    text = re.sub(r"`[^`\n]+`", "CODE", fb(attacked, "markdown"))  # code spans render literally
    assert "**6 of 6 points**" not in text and "\n# Notes" not in text and "<b>" not in text
    assert text.count("**") == 2  # the real score line only
    assert "\\*\\*6 of 6 points\\*\\*" in text  # the student's text, shown as it is


def test_no_name_or_format_stops_the_run(attacked):
    rows, results, log = attacked["rows"], attacked["results"], "\n".join(attacked["log"])
    full = str(EXERCISES + 1)  # the private check too
    assert rows["'=alice"]["total"] == full and rows["''=alice"]["total"] == "0"  # two students, two rows
    assert rows["x" * 249]["total"] == full and rows["latin-\\xe9t\\xe9"]["total"] == full
    shown = "\\u001b[2J\\u001b[31mred\\u000aFAKE LOG LINE"
    assert rows[shown]["total"] == full and "\x1b" not in log and "\nFAKE LOG LINE" not in log
    assert (results["huge"].status, results["v3"].status) == ("invalid", "invalid")
    assert "larger than 32 MB" in fb(attacked, "huge") and "old format (nbformat 3" in fb(attacked, "v3")
    names = grading.feedback_names(list(results))
    assert len(attacked["feedback"]) == len(results) == len(set(names.values()))


def test_the_attack_suite_is_quick(attacked):
    assert attacked["seconds"] < 90, attacked["log"]


def test_a_killed_run_keeps_its_rows_and_resumes(tmp_path):
    folder, out = tmp_path / "submissions", tmp_path / "grades.csv"
    for k in range(4):
        save(load(SOLUTION), folder / f"s{k}.ipynb")
    stubborn = load(EXERCISE)
    stubborn["cells"].insert(1, code_cell("import signal\nclass _Hang:\n    signal.signal(signal.SIGALRM, "
                                          "signal.SIG_IGN)\n    while True:\n        pass"))
    save(stubborn, folder / "zz-hang.ipynb")
    env = {**os.environ, "PYTHONPATH": str(ROOT), RUN_TAG.split("=")[0]: RUN_TAG.split("=")[1]}
    command = [sys.executable, "-m", "gancourse", "grade", str(folder), "--out", str(out), "--jobs", "1",
               "--timeout", "30"]
    grader = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 5):
        time.sleep(0.2)
    time.sleep(1)  # the grader is now in the endless submission
    grader.send_signal(signal.SIGKILL)
    grader.wait()
    rows = list(csv.DictReader(out.open()))
    assert sorted(r["student"] for r in rows) == ["s0", "s1", "s2", "s3"]
    assert all(r["total"] == str(EXERCISES) for r in rows)
    assert leftovers_after() == []  # each process dies with its parent
    save(load(EXERCISE), folder / "zz-hang.ipynb")  # fixed; the others are unchanged
    done = subprocess.run(command + ["--resume"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "grading 1 submission(s)" in done.stdout and "4 unchanged since the earlier run kept" in done.stdout
    rows = {r["student"]: r for r in csv.DictReader(out.open())}
    assert sorted(rows) == ["s0", "s1", "s2", "s3", "zz-hang"] and rows["zz-hang"]["total"] == "0"
    assert leftovers_after() == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="without namespaces, only a grader running as root gives submissions user ids of their own")
@pytest.mark.skipif(not sandbox.reachable_by_others(runner.imported_lazily()),
                    reason="Python lies in a folder other user ids cannot enter, so no user id of their own (the "
                           "confinement line says so; test_grading checks that line)")
def test_without_namespaces_a_user_id_per_job_still_protects_the_others(tmp_path, monkeypatch):
    """The fallback (GANLIB_NAMESPACES=0, as on kernels that forbid namespaces) when root: killing every
    process, a detached daemon and a forged results file still leave the others' marks honest and nothing
    running."""
    folder = tmp_path / "submissions"
    for name in ("good1", "good2"):
        save(load(SOLUTION), folder / f"{name}.ipynb")
    for name, code in {"killer": "import os, signal\nos.kill(-1, signal.SIGKILL)",
                       "daemon": f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; "
                                 f"time.sleep(30)', {DAEMON_TAG!r}], start_new_session=True)",
                       "forger": "import os\nopen('events.jsonl', 'w').write('{\"event\": \"done\"}')\nos._exit(0)",
                       }.items():
        save(attacker(code), folder / f"{name}.ipynb")
    monkeypatch.setenv("GANLIB_NAMESPACES", "0")
    monkeypatch.setenv(*RUN_TAG.split("="))
    log = []
    results = {g.student: g for g in grading.grade(folder, tmp_path / "grades.csv", timeout=TIMEOUT, jobs=2,
                                                   weaker_isolation=True, log=log.append)}
    assert any("confinement: WEAKER ISOLATION" in line and "a user id of its own per job" in line for line in log)
    totals = [results[n].total for n in ("good1", "good2", "killer", "daemon", "forger")]
    assert totals == [EXERCISES, EXERCISES, 0, 0, 0]
    assert results["good1"].status == results["good2"].status == "ok"
    monkeypatch.delenv(RUN_TAG.split("=")[0])
    assert leftovers_after() == []

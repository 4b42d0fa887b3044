"""The grader: chapters read from the solution notebooks, exercises extracted from submissions, and a folder
of chapter 01 submissions graded end to end (solution, untouched exercise, loops, a crash, invalid JSON,
partial, renamed, flood of output, folder per student, private checks) within the issue's minute."""

import copy
import csv
import json
import math
import os
import re
import sys
import time
from pathlib import Path

import pytest

from gancourse import grading
from ganlib.errors import GanlibError

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "01_vanilla_gan.ipynb"
EXERCISE = ROOT / "exercises" / "01_vanilla_gan.ipynb"
TIMEOUT = 8  # seconds per submission: a submission that ignores the grader's alarms costs this much wall time
STUB = 'raise NotImplementedError("{}: replace this line with your code")'


def load(path):
    return json.loads(path.read_text())


def edit(nb, name, old, new):
    """A copy of notebook JSON `nb` with `old` replaced by `new` in the cell that defines `name`."""
    nb = copy.deepcopy(nb)
    cell = next(c for c in nb["cells"] if f"def {name}(" in "".join(c["source"]))
    source = "".join(cell["source"])
    assert old in source, (old, source)
    cell["source"] = source.replace(old, new)
    return nb


def code_cell(source):
    return {"cell_type": "code", "execution_count": None, "id": f"x{abs(hash(source)) % 10**8}", "metadata": {},
            "outputs": [], "source": source}


def save(nb, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))


PRIVATE_CHECKS = '''
import math

import torch

from gancourse.checks import Mistake, close, run_check


def check_generator_loss(fn):
    """Private: at logit 0, D says 1/2, so the non-saturating loss is log 2."""

    def body():
        value = fn(torch.zeros(4))
        if not close(value, torch.tensor(math.log(2)), rtol=0, atol=1e-6):
            raise Mistake(f"at logit 0 the loss is log 2 = 0.6931, yours is {float(value):.4f}.")

    return run_check("generator_loss (private)", body)
'''


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade one folder of submissions, as `python -m gancourse grade` does; returns what the tests look at."""
    tmp = tmp_path_factory.mktemp("grading")
    folder = tmp / "submissions"
    sol, ex = load(SOLUTION), load(EXERCISE)
    save(sol, folder / "solution.ipynb")
    save(ex, folder / "untouched.ipynb")
    save(edit(ex, "discriminator_loss", STUB.format("discriminator_loss"), "while True:\n        pass"),
         folder / "loop.ipynb")
    stubborn = "import signal\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n    while True:\n        pass"
    save(edit(sol, "generator_loss", "return F.softplus", stubborn + "\n    return F.softplus"),
         folder / "stubborn.ipynb")
    save(edit(sol, "generator_loss", "return F.softplus", "import os\n    os.abort()\n    return F.softplus"),
         folder / "crash.ipynb")
    (folder / "invalid.ipynb").write_text(json.dumps(sol)[:3000])
    partial = edit(sol, "generator_loss", "return F.softplus", "return -F.softplus")  # wrong sign
    partial = edit(partial, "train_step", "fake = G(z)", "fake = G(z")  # a syntax error
    partial["cells"] = [c for c in partial["cells"] if "checks.check_" not in "".join(c["source"])]
    partial["cells"].insert(2, code_cell("%matplotlib inline\n!pip list\nimport no_such_module\nplt.plot([1, 2])"))
    save(partial, folder / "partial.ipynb")
    save(edit(sol, "train_step", "def train_step(", "def my_train_step("), folder / "renamed.ipynb")
    flood = "for _ in range(100):\n        print('x' * 1_000_000)\n    return F.softplus"
    save(edit(sol, "discriminator_loss", "return F.softplus", flood), folder / "flood.ipynb")
    save(sol, folder / "dana" / "week 1" / "my notebook.ipynb")  # a folder per student
    save(ex, folder / "dana" / ".ipynb_checkpoints" / "my notebook-checkpoint.ipynb")
    (folder / "erin").mkdir()
    private = tmp / "private_checks.py"
    private.write_text(PRIVATE_CHECKS)
    out, log = tmp / "grades.csv", []
    start = time.perf_counter()
    results = grading.grade(folder, out, timeout=TIMEOUT, jobs=2, extra_checks=private, log=log.append)
    seconds = time.perf_counter() - start
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    feedback = {p.stem: p.read_text() for p in (tmp / "grades-feedback").glob("*.md")}
    return dict(results={g.student: g for g in results}, rows={r["student"]: r for r in rows}, out=out,
                feedback=feedback, seconds=seconds, log=log)


def test_grades_csv(graded):
    rows = graded["rows"]
    with open(graded["out"], newline="") as f:
        header = next(csv.reader(f))
    assert header == ["student", "discriminator_loss", "generator_loss", "train_step", "pack_samples", "ema",
                      "extra:generator_loss", "total", "max", "status", "notebook", "sha256"]
    expected = {  # student: (points per column, total, status)
        "solution": ("111111", 6, "ok"),
        "untouched": ("000000", 0, "ok"),
        "loop": ("000000", 0, "timeout"),
        "stubborn": ("100000", 1, "timeout"),  # killed while checking generator_loss; the earlier point stays
        "crash": ("100000", 1, "crashed"),  # the process died in generator_loss; the earlier point stays
        "invalid": ("000000", 0, "invalid"),
        "partial": ("100110", 3, "ok"),  # wrong sign, a syntax error in train_step, and the private check fails
        "renamed": ("110111", 5, "ok"),
        "flood": ("111111", 6, "ok"),
        "dana": ("111111", 6, "ok"),
        "erin": ("000000", 0, "missing"),
    }
    assert sorted(rows) == sorted(expected)
    for student, (points, total, status) in expected.items():
        row = rows[student]
        got = "".join(row[c] for c in header[1:7])
        assert (got, int(row["total"]), row["status"]) == (points, total, status), (student, row)
        assert row["max"] == "6"
    assert rows["dana"]["notebook"] == "dana/week 1/my notebook.ipynb"
    assert rows["solution"]["notebook"] == "solution.ipynb"


def test_the_whole_run_takes_under_a_minute(graded):
    assert graded["seconds"] < 60, graded["log"]
    stubborn = graded["results"]["stubborn"]  # ignored the alarm: killed at the submission's limit
    assert TIMEOUT <= stubborn.seconds < TIMEOUT + 5
    assert graded["results"]["loop"].seconds < TIMEOUT  # interrupted at its exercise's share of the limit
    assert graded["log"][-1].startswith("graded 11 submission(s)") and "2 timeout" in graded["log"][-1]


def test_feedback_names_what_went_wrong(graded):
    fb = graded["feedback"]
    assert "**6 of 6 points**" in fb["solution"] and "not yet" not in fb["solution"]
    assert fb["untouched"].count("not implemented yet") == 6
    assert "timeout: did not finish within its share" in fb["loop"]
    assert "time limit (8 s) ran out while this exercise was being checked" in fb["stubborn"]
    assert "not run: the submission's time limit" in fb["stubborn"]
    assert "killed by signal SIGABRT (a crash, or the memory limit) while this exercise" in fb["crash"]
    assert "not a readable notebook (JSONDecodeError" in fb["invalid"]
    assert "wrong sign" in fb["partial"]
    assert "`train_step` is in cell 9, which has a syntax error at line 5" in fb["partial"]
    assert "at logit 0 the loss is log 2" in fb["partial"]  # the private check's message
    assert "no_such_module" not in fb["partial"]  # an import no exercise uses is not run
    assert "did you rename it to `my_train_step`?" in fb["renamed"]
    assert "no notebook (.ipynb)" in fb["erin"]
    flood = fb["flood"]  # the check calls the function several times: 100 MB per call
    printed = re.search(r"\(the first 2,000 of ([\d,]+) characters\)", flood)
    assert printed and int(printed.group(1).replace(",", "")) >= 100_000_100 and len(flood) < 10_000


def test_read_chapter_from_the_solution():
    chapter = grading.read_chapter(SOLUTION)
    assert chapter.name == "01_vanilla_gan"
    assert [(e.name, e.call) for e in chapter.exercises] == [
        ("discriminator_loss", "discriminator_loss"), ("generator_loss", "generator_loss"),
        ("train_step", "train_step"), ("pack_samples", "pack_samples"), ("ema", "ema_update")]
    assert grading.read_chapter(EXERCISE).exercises == chapter.exercises  # the handed-out notebook works too


def test_a_chapter_needs_registered_checks(tmp_path):
    save({"cells": [code_cell("checks.check_no_such_exercise(f)")]}, tmp_path / "02_wip.ipynb")
    with pytest.raises(GanlibError, match="calls check_no_such_exercise, which gancourse.checks.CHECKS does not"):
        grading.read_chapter(tmp_path / "02_wip.ipynb").require_checks()
    save({"cells": [code_cell("x = 1")]}, tmp_path / "03_none.ipynb")
    with pytest.raises(GanlibError, match="calls no checks"):
        grading.read_chapter(tmp_path / "03_none.ipynb").require_checks()


def test_find_chapter():
    known = grading.course_chapters()
    assert "01_vanilla_gan" in [c.name for c in known]
    for spec in ("01", "1", "01_vanilla_gan", str(EXERCISE)):
        assert grading.find_chapter(spec, known).exercises == grading.read_chapter(SOLUTION).exercises
    with pytest.raises(GanlibError, match="no such chapter"):
        grading.find_chapter("99", known)
    with pytest.raises(GanlibError, match="pass the chapter's exercise notebook"):
        grading.find_chapter("01", [])


def test_the_folder_chapter_is_the_one_most_submissions_look_like(tmp_path):
    ch01 = grading.read_chapter(SOLUTION)
    ch02 = grading.Chapter("02_other", (grading.Exercise("fade_in", "fade_in"), grading.Exercise("adain", "AdaIN")))
    other = {"cells": [code_cell("def fade_in(a, b, alpha):\n    return a\nchecks.check_adain(AdaIN)")]}
    save(load(EXERCISE), tmp_path / "a.ipynb")
    save(load(SOLUTION), tmp_path / "b.ipynb")
    save(other, tmp_path / "c.ipynb")
    chapter, subs = grading.collect(tmp_path, None, [ch01, ch02])
    assert chapter is ch01 and [s.student for s in subs] == ["a", "b", "c"]
    assert "looks like chapter 02_other" in subs[2].notes[0]
    assert grading.collect(tmp_path, ch02, [ch01, ch02])[0] is ch02  # --chapter wins
    (tmp_path / "a.ipynb").unlink()
    save(other, tmp_path / "d.ipynb")  # now b looks like 01, c and d like 02
    assert grading.collect(tmp_path, None, [ch01, ch02])[0] is ch02
    empty = tmp_path / "empty"
    save({"cells": [code_cell("x = 1")]}, empty / "e.ipynb")
    with pytest.raises(GanlibError, match="pass --chapter"):
        grading.collect(empty, None, [ch01, ch02])


def test_one_notebook_per_student_folder(tmp_path):
    save(load(EXERCISE), tmp_path / "fay" / "old.ipynb")
    save(load(SOLUTION), tmp_path / "fay" / "final.ipynb")
    os.utime(tmp_path / "fay" / "old.ipynb", (1e9, 1e9))
    (tmp_path / "notes.txt").write_text("not a submission")
    _, subs = grading.collect(tmp_path, grading.read_chapter(SOLUTION), [])
    assert [s.student for s in subs] == ["fay"]
    # both name every exercise (the check cells are there): the newer file is graded, the other one noted
    assert subs[0].path.name == "final.ipynb" and subs[0].notes == ["`old.ipynb` was not graded: only one "
                                                                    "notebook per student is."]


def test_extraction_defines_only_functions_classes_constants_and_used_imports():
    cells = [
        (1, "import math\nimport no_such_module_a\nimport json as unused_alias"),
        (2, "SCALE = 3\nz = math.sqrt(4)\nraise RuntimeError('top-level code does not run')"),
        (3, "%matplotlib inline\ndef area(r):\n    return math.pi * r ** 2 * SCALE\n!ls"),
        (4, "from __future__ import annotations\nclass Box:\n    size: NotDefined = 2\n\n"
            "    def volume(self):\n        return self.size ** 3"),
        (5, "def broken(:\n    pass"),
        (6, "%%time\ndef timed():\n    return helper() + 1\ndef helper():\n    return 41"),
        (7, "def uses_missing():\n    return no_such_module_a.VALUE"),
    ]
    module, notes, broken = grading._define(cells, ["area", "Box", "timed", "broken"], time.time() + 30, 1)
    ns = module.__dict__
    assert ns["area"](1) == pytest.approx(3 * math.pi) and ns["Box"]().volume() == 8 and ns["timed"]() == 42
    assert ns["SCALE"] == 3 and "z" not in ns and "unused_alias" not in ns  # computed values, unused imports
    assert "broken" not in ns and broken == {"broken": "cell 5, which has a syntax error at line 1 (invalid syntax)"}
    assert notes[0] == "cell 5 has a syntax error at line 1 (invalid syntax); the grader skipped that cell."
    assert "cell 1, line 2: `import no_such_module_a` raised ModuleNotFoundError" in notes[1]  # used, so run
    assert len(notes) == 2
    del sys.modules["submission"]


def test_notebook_code_reads_what_tools_write():
    v4 = {"cells": [{"cell_type": "markdown", "source": "# hi"}, {"cell_type": "code", "source": ["a = 1\n", "b = 2"]}]}
    assert grading.notebook_code(v4) == [(2, "a = 1\nb = 2")]  # no metadata, no outputs: still read
    v3 = {"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [{"cells": [
        {"cell_type": "code", "input": "def f():\n    pass", "outputs": [], "language": "python"}]}]}
    with pytest.raises(ValueError, match=r"old format \(nbformat 3.*save it \(they write nbformat 4\)"):
        grading.notebook_code(v3)  # refused in one line, not converted (slow, and a flood of warnings)
    for bad in ([], {"cells": "x"}, {"source": "x = 1"}):
        with pytest.raises(ValueError, match="no list of cells"):
            grading.notebook_code(bad)


def test_bad_input(tmp_path):
    with pytest.raises(GanlibError, match="must end in .csv"):
        grading.grade(tmp_path, tmp_path / "grades.txt")
    with pytest.raises(GanlibError, match="is not a folder"):
        grading.grade(tmp_path / "nowhere", tmp_path / "grades.csv")
    with pytest.raises(GanlibError, match="no notebooks in"):
        grading.grade(tmp_path, tmp_path / "grades.csv")
    save(load(SOLUTION), tmp_path / "s.ipynb")
    (tmp_path / "private.py").write_text("def check_something_else(fn):\n    return True\n")
    with pytest.raises(GanlibError, match="defines no check for chapter 01_vanilla_gan"):
        grading.grade(tmp_path, tmp_path / "grades.csv", extra_checks=tmp_path / "private.py")
    (tmp_path / "private.py").write_text("def check_train_step(fn:\n")
    with pytest.raises(GanlibError, match="failed to load"):
        grading.grade(tmp_path, tmp_path / "grades.csv", extra_checks=tmp_path / "private.py")


def test_remote_checks_say_what_local_checks_say(tmp_path, monkeypatch):
    """Wrong answers whose diagnosis needs in-place updates of the arguments (optimizer steps, stale .grad,
    the tiny G's count of backward passes) or gradients through the student's output: graded through the
    submission's process, each gets the message the same function gets from the check run locally."""
    from gancourse import checks

    monkeypatch.delenv("GANLIB_STRICT_CHECKS", raising=False)  # the local checks return their messages
    variants = {
        "stale_d": ("opt_d.zero_grad()\n    ", ""),
        "no_detach": ("D(fake.detach())", "D(fake)"),
        "stale_g": ("opt_g.zero_grad()\n    ", ""),
        "tensor_losses": ("return loss_d.item(), loss_g.item()", "return loss_d, loss_g"),
        "pair_missing": ("return loss_d.item(), loss_g.item()", "return loss_d.item()"),
    }
    sol = load(SOLUTION)
    expected = {}
    for name, (old, new) in variants.items():
        nb = edit(sol, "train_step", old, new)
        save(nb, tmp_path / "subs" / f"{name}.ipynb")
        source = next("".join(c["source"]) for c in nb["cells"] if "def train_step(" in "".join(c["source"]))
        namespace = {}
        exec("from ganlib import losses\n" + source, namespace)
        expected[name] = checks.check_train_step(namespace["train_step"]).message
    wrong_grad = edit(sol, "generator_loss", "return F.softplus(-fake_logits).mean()",
                      "return F.softplus(-fake_logits.detach()).mean().requires_grad_()")
    save(wrong_grad, tmp_path / "subs" / "detached.ipynb")
    graded = {g.student: g for g in grading.grade(tmp_path / "subs", tmp_path / "grades.csv", timeout=30, jobs=2,
                                                   log=lambda _: None)}
    for name, message in expected.items():
        got = next(o for o in graded[name].outcomes if o.column == "train_step")
        assert got.message == message, name
        assert got.passed == (name == "tensor_losses")  # returning tensors is fine: float() reads them
    assert len(set(expected.values())) == len(expected)  # five different diagnoses
    generator = next(o for o in graded["detached"].outcomes if o.column == "generator_loss")
    assert not generator.passed and "no (or a wrong) gradient reaches the logits" in generator.message


def test_replies_are_read_as_data_only():
    """What a submission sends is decoded as tensors and plain values, each node checked; anything else
    is refused, and a state that does not fit the trusted side's object is an error of the student's code."""
    import torch

    from gancourse.grading import remote

    tensors = []
    value = remote.encode((torch.ones(2), [1, 2.5, "x", None], {"k": True}, len, torch.float32), tensors)
    out = remote.decode(value, tensors)
    assert torch.equal(out[0], torch.ones(2)) and out[1:3] == ([1, 2.5, "x", None], {"k": True})
    assert type(out[3]).__name__ == "builtin_function_or_method" and isinstance(out[3], remote.Opaque)
    for bad in (["t", 5], ["eval", "1"], ["list", "abc"], ["np", "O", 1], ["dict", [[[], ["v", 1]]]], "v", []):
        with pytest.raises(remote.BadReply):
            remote.decode(bad, tensors)
    deep = ["v", 0]
    for _ in range(20):
        deep = ["list", [deep]]
    with pytest.raises(remote.BadReply):
        remote.decode(deep, [])
    linear = torch.nn.Linear(2, 3)
    state = remote.capture(linear)
    state["params"][0][1] = torch.zeros(5)  # the weight, of another shape
    with pytest.raises(RuntimeError, match="changed its shape"):
        remote.restore(linear, state)
    error = remote._exception({"type": "NotImplementedError", "message": "todo", "frame": " (at cell 3, line 2)"})
    assert type(error) is NotImplementedError and error.student_frame == " (at cell 3, line 2)"
    custom = remote._exception({"type": "Mistake", "message": "passed", "frame": ""})  # not ganlib's Mistake
    assert isinstance(custom, remote.StudentError) and type(custom).__name__ == "Mistake"


def test_private_checks_cannot_send_their_own_classes(tmp_path):
    private = tmp_path / "private.py"
    private.write_text("from gancourse.checks import run_check\n\n\nclass Box:\n    pass\n\n\n"
                       "def check_generator_loss(fn):\n    return run_check('generator_loss', lambda: fn(Box()))\n")
    save(load(SOLUTION), tmp_path / "subs" / "s.ipynb")
    g = grading.grade(tmp_path / "subs", tmp_path / "g.csv", timeout=20, jobs=1, extra_checks=private,
                      log=lambda _: None)[0]
    extra = next(o for o in g.outcomes if o.column == "extra:generator_loss")
    assert not extra.passed and "the check stopped: NotTransferable: a private check passes a Box" in extra.message
    assert g.total == len(grading.read_chapter(SOLUTION).exercises) and g.status == "ok"


def test_csv_cells_and_feedback_names():
    from gancourse.grading import report

    assert [report.cell(v) for v in ("=1+1", "+x", "-2", "@a", "\tx", "ann", 3, "'=1+1")] == [
        "'=1+1", "'+x", "'-2", "'@a", "'\tx", "ann", "3", "''=1+1"]
    names = grading.feedback_names(["k a b", "k_a_b", "Ann", "ann", "bob", "../etc"])
    assert len(set(names.values())) == 6 and names["bob"] == "bob.md"
    assert all("/" not in n and not n.startswith(".") for n in names.values())


def test_a_user_id_per_job_only_where_it_can_reach_python(tmp_path):
    """Without namespaces, a root grader switches each submission to its own user id only when that user id
    can enter the folders that hold Python and ganlib; otherwise the confinement line says why not."""
    from gancourse.grading import sandbox

    shut = tmp_path / "private"
    (shut / "venv").mkdir(parents=True)
    shut.chmod(0o700)
    tmp_path.chmod(0o755)
    assert not sandbox.reachable_by_others([str(shut / "venv")])
    assert sandbox.reachable_by_others(["/usr"])  # only / above it, which every user may enter
    if os.geteuid() == 0:
        line = sandbox.Confinement(namespaces=False, switch_user=False).describe()
        assert "chmod o+x" in line and "cannot enter" in line


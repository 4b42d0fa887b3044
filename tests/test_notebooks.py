"""The notebooks as files: stored clean, exercises generated from solutions, the Colab set-up cell, and, graded
as submissions, every solution passing every check and every exercise failing each with 'not implemented'.
(nbval runs the lecture and solution notebooks themselves, in the smoke profile, as part of the same `pytest`.)"""

import re
from pathlib import Path

import nbformat
import pytest

from gancourse import checks, grading
from gancourse.grading import read_chapter, read_submission
from gancourse.notebooks import NOTEBOOK_METADATA, exercise_from_solution, is_clean, make_exercises, strip_solutions
from gancourse.repo import project
from ganlib.errors import GanlibError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))
ALL = NOTEBOOKS + SOLUTIONS + EXERCISES
REPO, TAG = project(ROOT)


def rel(p):
    return str(p.relative_to(ROOT))


def test_there_are_notebooks():
    assert NOTEBOOKS and SOLUTIONS
    assert [p.name for p in EXERCISES] == [p.name for p in SOLUTIONS]


@pytest.mark.parametrize("path", ALL, ids=rel)
def test_stored_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert is_clean(nb), f"{rel(path)} has outputs or metadata: run `python -m gancourse make-exercises` or clear it"


def test_exercises_are_generated_from_solutions(tmp_path):
    make_exercises(ROOT / "solutions", tmp_path)
    for path in SOLUTIONS:
        fresh = (tmp_path / path.name).read_text()
        stored = (ROOT / "exercises" / path.name).read_text()
        assert fresh == stored, f"exercises/{path.name} is stale: run `python -m gancourse make-exercises`"


def test_solution_regions_become_stubs_that_name_the_exercise():
    source = ('def d_loss(x):\n    """Doc stays."""\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n\n'
              'class Block:\n    def forward(self, x):\n'
              '        ### BEGIN SOLUTION\n        return x\n        ### END SOLUTION')
    stripped = strip_solutions(source)
    assert "return x" not in stripped and '"""Doc stays."""' in stripped
    namespace = {}
    exec(stripped, namespace)
    with pytest.raises(NotImplementedError, match="^d_loss: replace this line with your code$"):
        namespace["d_loss"](1)
    with pytest.raises(NotImplementedError, match="^forward: "):
        namespace["Block"]().forward(1)
    assert strip_solutions("Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION", markdown=True) == (
        "Why?\n*Your answer here.*")
    with pytest.raises(GanlibError, match="without a matching"):
        strip_solutions("def f():\n    ### BEGIN SOLUTION\n    pass", "cell 3")


def test_exercise_from_solution_drops_solution_only_cells_outputs_and_metadata():
    nb = nbformat.v4.new_notebook(metadata={"colab": {"provenance": []}, "widgets": {"state": {}}})
    answer = nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION",
                                       execution_count=3, metadata={"collapsed": True, "tags": ["keep"]},
                                       outputs=[nbformat.v4.new_output("stream", text="1\n")])
    secret = nbformat.v4.new_code_cell("print(f())", metadata={"tags": ["solution-only"]})
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), answer, secret]
    exercise = exercise_from_solution(nb)
    assert [c.cell_type for c in exercise.cells] == ["markdown", "code"]
    code = exercise.cells[1]
    assert code.outputs == [] and code.execution_count is None and code.metadata == {"tags": ["keep"]}
    assert "NotImplementedError" in code.source and exercise.metadata == NOTEBOOK_METADATA
    assert nb.cells[1].outputs and len(nb.cells) == 3  # the solution notebook itself is not changed


@pytest.mark.parametrize("path", ALL, ids=rel)
def test_setup_cell(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code").source
    assert '"google.colab" in sys.modules' in first
    assert f"git+https://github.com/{REPO}@{TAG}" in first  # the repository and release of pyproject.toml
    assert "-e" not in re.findall(r'"(-\w)"', first)  # non-editable on Colab
    assert not re.search(r"install[^\n]*\btorch", first)  # Colab's torch is used as it is
    assert "ganlib.setup(" in first
    assert nb.metadata["accelerator"] == "GPU" and nb.metadata["colab"]["gpuType"]  # Colab opens it on a GPU


def test_every_check_is_used_and_exists():
    for path in SOLUTIONS:
        read_chapter(path).require_checks()  # it has exercises, and CHECKS has each one's check
    used = {e.name for path in SOLUTIONS for e in read_chapter(path).exercises}
    assert sorted(used) == sorted(checks.CHECKS)


def test_solutions_pass_and_exercises_say_not_implemented():
    """Every solution and exercise notebook, graded as a student's submission of its chapter: each exercise
    is extracted alone (so the solutions' exercise functions must be self-contained) and checked. Solutions
    get every point; the student versions get none, every check saying that the exercise is not implemented.
    (nbval also runs each solution notebook top to bottom, with GANLIB_STRICT_CHECKS=1.)"""
    jobs = []
    for path in SOLUTIONS:
        chapter = read_chapter(path)
        jobs += [(read_submission("solution", path, ROOT), chapter),
                 (read_submission("exercise", ROOT / "exercises" / path.name, ROOT), chapter)]
    for (sub, chapter), graded in zip(jobs, grading.run(jobs, timeout=120, jobs=2)):
        messages = {o.column: o.message for o in graded.outcomes}
        assert [o.column for o in graded.outcomes] == [e.name for e in chapter.exercises]
        if sub.student == "solution":
            assert graded.status == "ok" and all(o.passed for o in graded.outcomes), (sub.shown, messages)
        else:
            assert graded.status == "ok" and not any(o.passed for o in graded.outcomes), (sub.shown, messages)
            assert all(m.startswith("not implemented yet") for m in messages.values()), (sub.shown, messages)

"""The notebooks as files: stored clean, exercises generated from solutions, the Colab set-up cell, and every
exercise check failing with 'not implemented' in the student version. (nbval runs the lecture and solution
notebooks themselves, in the smoke profile, as part of the same `pytest`.)"""

import re
from pathlib import Path

import nbformat
import pytest

from ganlib import checks
from ganlib.notebooks import is_clean, make_exercises

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))
ALL = NOTEBOOKS + SOLUTIONS + EXERCISES
REPO_URL = re.search(r'^Repository = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
CHECK_CALL = re.compile(r"checks\.(check_\w+)\(")


def rel(p):
    return str(p.relative_to(ROOT))


def test_there_are_notebooks():
    assert NOTEBOOKS and SOLUTIONS
    assert [p.name for p in EXERCISES] == [p.name for p in SOLUTIONS]


@pytest.mark.parametrize("path", ALL, ids=rel)
def test_stored_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert is_clean(nb), f"{rel(path)} has outputs or metadata: run `python -m ganlib make-exercises` or clear it"


def test_exercises_are_generated_from_solutions(tmp_path):
    make_exercises(ROOT / "solutions", tmp_path)
    for path in SOLUTIONS:
        fresh = (tmp_path / path.name).read_text()
        stored = (ROOT / "exercises" / path.name).read_text()
        assert fresh == stored, f"exercises/{path.name} is stale: run `python -m ganlib make-exercises`"


@pytest.mark.parametrize("path", ALL, ids=rel)
def test_setup_cell(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code").source
    assert '"google.colab" in sys.modules' in first
    assert f"git+{REPO_URL}" in first  # the same repository as pyproject.toml
    assert "-e" not in re.findall(r'"(-\w)"', first)  # non-editable on Colab
    assert not re.search(r"install[^\n]*\btorch", first)  # Colab's torch is used as it is
    assert "ganlib.setup(" in first


def exercise_checks(path):
    nb = nbformat.read(path, as_version=4)
    return [name for c in nb.cells if c.cell_type == "code" for name in CHECK_CALL.findall(c.source)]


def test_every_check_is_used_and_exists():
    used = [name for path in SOLUTIONS for name in exercise_checks(path)]
    assert sorted(set(used)) == sorted(f"check_{n}" for n in checks.CHECKS)
    for path in SOLUTIONS:
        assert exercise_checks(path), f"{rel(path)} has no check"


@pytest.mark.parametrize("path", EXERCISES, ids=rel)
def test_exercise_checks_say_not_implemented(path, monkeypatch):
    """Run the student notebook as a student would before filling anything in: every check reports that its
    exercise is not implemented yet (and nothing else)."""
    from nbclient import NotebookClient

    monkeypatch.delenv("GANLIB_STRICT_CHECKS", raising=False)  # the kernel inherits this environment
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seen = 0
    for cell in nb.cells:
        if cell.cell_type != "code" or not CHECK_CALL.search(cell.source):
            continue
        text = "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "") for o in cell.outputs)
        assert "[NOT YET]" in text and "not implemented yet" in text, (cell.source, text)
        seen += 1
    assert seen == len(exercise_checks(path))

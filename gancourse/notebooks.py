"""Notebook files: storing them clean, and generating `exercises/` from `solutions/`.

In a solution notebook, each answer sits between the nbgrader markers ``### BEGIN SOLUTION`` and
``### END SOLUTION`` (in a code or markdown cell). `make_exercises` copies every ``solutions/NN_*.ipynb`` to
``exercises/NN_*.ipynb`` with each such region replaced by a stub (``raise NotImplementedError(...)`` naming
the exercise, or "*Your answer here.*" in markdown), cells tagged ``solution-only`` removed, outputs
cleared and metadata cleaned. `exercises/` is never edited by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from ganlib.errors import GanlibError, first_line

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SOLUTION_ONLY_TAG = "solution-only"
_DEF = re.compile(r"^(\s*)(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)")


# The notebook metadata every stored notebook has: the kernel, the language, and Colab's runtime request, so
# that a notebook opened from its badge gets a GPU runtime (Colab reads `accelerator` and `colab.gpuType`).
NOTEBOOK_METADATA = {
    "accelerator": "GPU",
    "colab": {"gpuType": "T4"},
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove outputs, execution counts and all metadata except cell tags; the notebook's metadata becomes
    `NOTEBOOK_METADATA`."""
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags")
        cell.metadata = nbformat.NotebookNode({"tags": tags} if tags else {})
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.pop("attachments", None) if cell.cell_type != "markdown" else None
    nb.metadata = nbformat.from_dict(NOTEBOOK_METADATA)
    return nb


def is_clean(nb: nbformat.NotebookNode) -> bool:
    import copy

    return nbformat.writes(clean(copy.deepcopy(nb))) == nbformat.writes(nb)


def strip_solutions(source: str, where: str = "a cell", markdown: bool = False) -> str:
    """Replace every BEGIN/END SOLUTION region of a cell's source with the exercise stub."""
    lines, out, i = source.split("\n"), [], 0
    while i < len(lines):
        line = lines[i]
        if line.strip() != BEGIN:
            if line.strip() == END:
                raise GanlibError(f"{where}: '{END}' without a '{BEGIN}' before it.")
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == END), None)
        if end is None:
            raise GanlibError(f"{where}: '{BEGIN}' without a matching '{END}'.")
        if markdown:
            out.append("*Your answer here.*")
        else:
            name = _enclosing_name(lines[:i], indent) or "this exercise"
            out.append(f"{indent}# YOUR CODE HERE")
            out.append(f'{indent}raise NotImplementedError("{name}: replace this line with your code")')
        i = end + 1
    return "\n".join(out)


def _enclosing_name(before: list[str], indent: str) -> str | None:
    for line in reversed(before):
        m = _DEF.match(line)
        if m and len(m.group(1)) < len(indent):
            return m.group(2)
    return None


def exercise_from_solution(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The student version of a solution notebook (a new notebook; `nb` is not changed)."""
    import copy

    nb = copy.deepcopy(nb)
    cells = []
    for k, cell in enumerate(nb.cells):
        if SOLUTION_ONLY_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        if BEGIN in cell.source or END in cell.source:
            cell.source = strip_solutions(cell.source, f"{name}, cell {k + 1}", markdown=cell.cell_type == "markdown")
        cells.append(cell)
    nb.cells = cells
    return clean(nb)


def write_notebook(nb: nbformat.NotebookNode, path: str | Path) -> None:
    from ganlib.files import atomic_write_text

    atomic_write_text(nbformat.writes(nb), path)


def make_exercises(solutions: str | Path = "solutions", exercises: str | Path = "exercises") -> list[Path]:
    """Regenerate every exercises/NN_*.ipynb from solutions/NN_*.ipynb; remove exercises without a source."""
    solutions, exercises = Path(solutions), Path(exercises)
    sources = sorted(solutions.glob("*.ipynb"))
    if not sources:
        raise GanlibError(f"no solution notebooks in {str(solutions)!r}: run this from the course folder, or "
                          f"pass --solutions.")
    exercises.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sources:
        try:
            nb = nbformat.read(src, as_version=4)
        except Exception as e:
            raise GanlibError(f"{src} is not a valid notebook ({first_line(e, 100)}): fix its JSON.") from None
        dst = exercises / src.name
        write_notebook(exercise_from_solution(nb, src.name), dst)
        written.append(dst)
    for stale in exercises.glob("*.ipynb"):
        if not (solutions / stale.name).exists():
            stale.unlink()
    return written

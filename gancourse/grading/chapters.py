"""Chapters: which exercises a notebook has, read from its check calls; an instructor's private checks."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ganlib.errors import GanlibError, first_line

from .. import checks

CHECK_CALL = re.compile(r"^check_(\w+)$")
PRIVATE_MODULE_PREFIX = "ganlib_private_checks_"  # the module name of a loaded --extra-checks file


class OldFormat(ValueError):
    """A notebook older than nbformat 4, refused rather than converted (a slow conversion, floods of warnings)."""


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
            raise GanlibError(f"{self.name} calls check_{unknown[0]}, which gancourse.checks.CHECKS does not register: "
                              f"register it there, or update gancourse.")


def check_calls(source: str) -> list[Exercise]:
    """The `check_<name>(expr)` calls in a cell's source (any cell that is not valid Python has none)."""
    tree = parse_cell(source)[0]
    found = []
    for node in ast.walk(tree) if tree else ():
        if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords:
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            m = CHECK_CALL.match(func)
            if m:
                found.append(Exercise(m.group(1), ast.unparse(node.args[0])))
    return sorted(found, key=lambda e: source.find(f"check_{e.name}"))


def read_chapter(path: str | Path) -> Chapter:
    """The exercises of a solution (or exercise) notebook: one per `checks.check_<name>(...)` call."""
    path = Path(path)
    try:
        cells = notebook_code(json.loads(path.read_text(encoding="utf-8")))
    except Exception as e:
        raise GanlibError(f"cannot read {str(path)!r} as a notebook ({first_line(e)}): pass the chapter's "
                          f"solution or exercise notebook.") from None
    exercises: dict[str, Exercise] = {}
    for _, source in cells:
        for ex in check_calls(source):
            exercises.setdefault(ex.name, ex)
    return Chapter(path.stem, tuple(exercises.values()))


def _course_roots() -> tuple[Path, Path]:
    """Where the course's notebook folders are looked for: the current folder, then beside the installed gancourse."""
    return Path.cwd(), Path(__file__).resolve().parents[2]


def course_chapters() -> list[Chapter]:
    """Every chapter with exercises in the course's `solutions/` folder (in the current folder, or beside the
    installed gancourse package); [] when neither exists, e.g. when the course was installed without the repository."""
    for root in _course_roots():
        for folder in ("solutions", "exercises"):
            paths = sorted((root / folder).glob("[0-9]*.ipynb"))
            if paths:
                return [c for c in map(read_chapter, paths) if c.exercises]
    return []


def course_notebooks(chapter: str) -> dict[str, Path]:
    """A chapter's solution and exercise notebooks in the course (`chapter`: its file name without .ipynb, e.g.
    "01_vanilla_gan"), as {"solution": path, "exercise": path}; a GanlibError when the course is not here."""
    for root in _course_roots():
        found = {kind: root / folder / f"{chapter}.ipynb" for kind, folder in (("solution", "solutions"),
                                                                                 ("exercise", "exercises"))}
        if all(path.is_file() for path in found.values()):
            return found
    raise GanlibError(f"the course's solutions/{chapter}.ipynb and exercises/{chapter}.ipynb are not here: run "
                      f"from the course folder.")


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


@dataclass(frozen=True)
class PrivateChecks:
    """An instructor's private checks: a Python file with functions `check_<exercise>(fn) -> CheckResult`,
    written like those in gancourse.checks (e.g. with `checks.run_check`), kept out of the public repository."""

    path: Path
    checks: dict  # exercise name -> check function

    @classmethod
    def load(cls, path: str | Path) -> PrivateChecks:
        import importlib.util

        path = Path(path).resolve()
        if not path.is_file():
            raise GanlibError(f"--extra-checks {str(path)!r} does not exist: pass a Python file of check functions.")
        spec = importlib.util.spec_from_file_location(f"{PRIVATE_MODULE_PREFIX}{abs(hash(str(path)))}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise GanlibError(f"--extra-checks {str(path)!r} failed to load ({type(e).__name__}: {first_line(e)}): "
                              f"fix the file.") from None
        found = {m.group(1): fn for name, fn in vars(module).items() if callable(fn) and (m := CHECK_CALL.match(name))
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


def notebook_code(content) -> list[tuple[int, str]]:
    """(cell number, source) of the code cells of a notebook's JSON. Lenient on purpose: a notebook that a
    tool saved with missing metadata is still graded; only the cells' type and source are needed."""
    if isinstance(content, dict) and ("worksheets" in content or content.get("nbformat") in (1, 2, 3)):
        raise OldFormat("the notebook is in an old format (nbformat 3, from before 2015): open it in Jupyter or "
                        "Colab, save it (they write nbformat 4), and submit it again.")
    if not isinstance(content, dict) or not isinstance(content.get("cells"), list):
        raise ValueError("no list of cells")
    cells = []
    for k, cell in enumerate(content["cells"]):
        source = cell.get("source", "") if isinstance(cell, dict) else ""
        source = "".join(source) if isinstance(source, list) else source
        if isinstance(cell, dict) and cell.get("cell_type") == "code" and isinstance(source, str):
            cells.append((k + 1, source))
    return cells


def parse_cell(source: str, filename: str = "<cell>") -> tuple[ast.Module | None, SyntaxError | None]:
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


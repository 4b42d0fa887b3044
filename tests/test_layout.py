"""The library's layout, read from its source: imports flow one way (README, "The library"), only the modules that
work on the course's notebooks name their folders, and no file is too long to read."""

import ast
import re
from pathlib import Path

import ganlib

ROOT = Path(ganlib.__file__).parent

# Each top-level module or package of ganlib and its floor: a module imports only modules on floors below its own
# (and the rest of its own package). The README's import-flow paragraph says the same in words.
FLOORS = {
    "errors": 0, "resampling": 0,
    "files": 1, "losses": 1, "layers": 1, "data": 1, "env": 1, "repo": 1, "distributed": 1,  # the leaves
    "viz": 2, "models": 2, "options": 2, "notebooks": 2,
    "checkpoints": 3, "latent": 3, "metrics": 3,
    "train": 4,
    "progressive": 5, "stylegan_training": 5,  # the chapters' trainers
    "recipes": 6,
    "checks": 7, "grading": 8, "bench": 9, "__main__": 10,
}
# Modules that may name the course's notebook folders: they work on the notebooks (generating exercises, grading,
# pointing their first cells at a fork), or pass the folders' paths on (the command line's defaults, the benchmarks'
# runner).
NOTEBOOK_READERS = ("notebooks.py", "grading/", "repo.py", "__main__.py", "bench/__init__.py")
MAX_LINES = 450


def sources() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def unit(path: Path) -> str:
    """The top-level module or package a file belongs to: 'train', 'models', '__main__'."""
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def ganlib_imports(path: Path, source: str | None = None) -> set[str]:
    """The top-level ganlib modules and packages that `path` (or `source`, read as if it were there) imports, at
    any depth of its code: lazy imports inside functions count."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]  # ('recipes',) for recipes/x.py and recipes/__init__
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            if base:
                found.add(base[0])
            elif node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "ganlib":
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ganlib."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("ganlib."))
    return {name for name in found if name in FLOORS}


def test_the_import_reader_sees_relative_absolute_and_lazy_imports():
    source = ("from .. import data, errors\nfrom ..train import Trainer\nfrom . import dcgan\n\n\ndef f():\n"
              "    import ganlib.viz\n    from ganlib import losses\n    from ganlib.models import stylegan\n")
    assert ganlib_imports(ROOT / "recipes" / "x.py", source) == {"data", "errors", "train", "recipes", "viz",
                                                                  "losses", "models"}
    assert ganlib_imports(ROOT / "x.py", "from . import viz\nfrom .options import TrainConfig\n") == {"viz",
                                                                                                      "options"}


def test_every_module_has_a_floor():
    assert {unit(p) for p in sources() if p != ROOT / "__init__.py"} <= set(FLOORS)


def test_imports_flow_down_the_floors():
    wrong = []
    for path in sources():
        if path == ROOT / "__init__.py":
            continue  # the package itself: `ganlib.setup` and `GanlibError`
        own = unit(path)
        for name in ganlib_imports(path) - {own}:
            if FLOORS[name] >= FLOORS[own]:
                wrong.append(f"{rel(path)} imports {name} (floor {FLOORS[name]} >= {FLOORS[own]})")
    assert not wrong, wrong


def test_models_never_import_training_or_data():
    for path in (ROOT / "models").glob("*.py"):
        assert not ganlib_imports(path) & {"train", "data", "options", "checkpoints", "recipes"}, rel(path)


def test_only_the_notebook_modules_name_the_course_folders():
    pattern = re.compile(r"(^|/)(notebooks|solutions|exercises)(/|$)")  # the folders; any file may be a .ipynb
    readers = {rel(path) for path in sources() if not rel(path).startswith(NOTEBOOK_READERS)
               and any(pattern.search(text) for text in code_strings(path.read_text()))}
    assert not readers, f"{sorted(readers)}: name the notebook folders only in {NOTEBOOK_READERS}"


def code_strings(source: str) -> list[str]:
    """The string constants of `source` except docstrings (which may well speak of the notebooks)."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_the_string_reader_skips_docstrings_only():
    source = '"""Reads solutions/."""\n\n\ndef f():\n    """From notebooks/."""\n    return Path("exercises") / "x"\n'
    assert sorted(code_strings(source)) == ["exercises", "x"]


def test_no_file_is_over_450_lines():
    long = {rel(p) for p in sources() if len(p.read_text().splitlines()) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {sorted(long)}"

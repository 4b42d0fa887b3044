"""The two packages' layout, read from their source: `ganlib`, the library the notebooks teach, never imports
`gancourse`, the course's tools; within each package imports flow one way (README, "The library"); only the
tools that work on the course's notebooks name their folders; no notebook imports a benchmark or the command
line; and the library stays short enough to read in an afternoon."""

import ast
import json
import re
from pathlib import Path

import gancourse
import ganlib

ROOT = Path(ganlib.__file__).parent
COURSE = Path(gancourse.__file__).parent
REPO = ROOT.parent

# Each top-level module or package of a package and its floor: a module imports only modules on floors below
# its own (and the rest of its own package). The README's import-flow paragraph says the same in words.
FLOORS = {
    "ganlib": {
        "errors": 0, "shapes": 0, "resampling": 0,
        "files": 1, "losses": 1, "layers": 1, "spectral": 1, "data": 1, "env": 1, "distributed": 1,  # the leaves
        "viz": 2, "models": 2, "options": 2,
        "checkpoints": 3, "latent": 3, "metrics": 3, "loop": 3,
        "train": 4,
        "progressive": 5, "stylegan_training": 5,  # the chapters' trainers
    },
    "gancourse": {  # on top of the whole of ganlib
        "datasets": 0, "launch": 0, "widgets": 0,  # what the library leaves out: downloaded data, torchrun, sliders
        "results": 1, "notebooks": 1, "repo": 1, "recipes": 1, "evaluation": 1, "checks": 1,
        "grading": 2, "bench": 3, "__main__": 4,
    },
}
# Modules that may name the course's notebook folders: they work on the notebooks (generating exercises, grading,
# pointing their first cells at a fork), or pass the folders' paths on (the command line's defaults, the benchmarks'
# runner). None of them is in ganlib.
NOTEBOOK_READERS = ("notebooks.py", "grading/", "repo.py", "__main__.py", "bench/__init__.py")
MAX_LINES = 400  # every file of the library students read
MAX_TOOL_LINES = 450  # every file of the course's tools
MAX_LIBRARY_LINES = 4_850  # the whole of ganlib: a ratchet (the aim is 4,500), lowered as run support moves out
NOTEBOOK_FOLDERS = ("notebooks", "solutions", "exercises")


def sources(root: Path = ROOT) -> list[Path]:
    return sorted(root.rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def unit(path: Path) -> str:
    """The top-level module or package a file belongs to: 'train', 'models', '__main__'."""
    return path.relative_to(path_root(path)).parts[0].removesuffix(".py")


def path_root(path: Path) -> Path:
    return ROOT if path.is_relative_to(ROOT) else COURSE


def imports(path: Path, source: str | None = None) -> dict[str, set[str]]:
    """{package: the top-level modules of it that `path` (or `source`, read as if it were there) imports}, for
    ganlib and gancourse, at any depth of its code: lazy imports inside functions count."""
    root = path_root(path)
    own = root.name
    package = path.relative_to(root).with_suffix("").parts[:-1]  # ('recipes',) for recipes/x.py and recipes/__init__
    found = {"ganlib": set(), "gancourse": set()}
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            if base:
                found[own].add(base[0])
            elif node.module:
                found[own].add(node.module.split(".")[0])
            else:
                found[own].update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module in found:
            found[node.module].update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in found:
            top, name = node.module.split(".")[:2]
            found[top].add(name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                top, *rest = a.name.split(".")
                if top in found:
                    found[top].add(rest[0] if rest else "")  # "": the package itself
    return found


def library_imports(path: Path, source: str | None = None) -> set[str]:
    """The top-level modules of its own package that `path` imports."""
    own = path_root(path).name
    return {name for name in imports(path, source)[own] if name in FLOORS[own]}


def test_the_import_reader_sees_relative_absolute_and_lazy_imports():
    source = ("from .. import data, errors\nfrom ..train import Trainer\nfrom . import dcgan\n\n\ndef f():\n"
              "    import ganlib.viz\n    from ganlib import losses\n    from ganlib.models import stylegan\n")
    assert library_imports(ROOT / "models" / "x.py", source) == {"data", "errors", "train", "models", "viz",
                                                                  "losses"}
    assert library_imports(ROOT / "x.py", "from . import viz\nfrom .options import TrainConfig\n") == {"viz",
                                                                                                       "options"}
    source = "import gancourse\nfrom ganlib import data\nfrom . import recipes\n\n\ndef f():\n" \
             "    import gancourse.bench\n"
    assert imports(COURSE / "grading" / "x.py", source) == {"ganlib": {"data"}, "gancourse": {"", "bench",
                                                                                             "grading"}}
    assert imports(ROOT / "x.py", "from gancourse.checks import core\n")["gancourse"] == {"checks"}


def test_every_module_has_a_floor():
    for root in (ROOT, COURSE):
        assert {unit(p) for p in sources(root) if p != root / "__init__.py"} <= set(FLOORS[root.name]), root.name


def test_ganlib_imports_nothing_from_gancourse():
    wrong = {rel(path) for path in sources(ROOT) if imports(path)["gancourse"]}
    assert not wrong, f"{sorted(wrong)} import gancourse: the library never uses the course's tools"


def test_imports_flow_down_the_floors():
    wrong = []
    for root in (ROOT, COURSE):
        floors = FLOORS[root.name]
        for path in sources(root):
            if path == root / "__init__.py":
                continue  # the package itself: `ganlib.setup` and `GanlibError`
            own = unit(path)
            for name in library_imports(path) - {own}:
                if floors[name] >= floors[own]:
                    wrong.append(f"{rel(path)} imports {name} (floor {floors[name]} >= {floors[own]})")
    assert not wrong, wrong


def test_models_never_import_training_or_data():
    for path in (ROOT / "models").glob("*.py"):
        assert not library_imports(path) & {"train", "data", "options", "checkpoints"}, rel(path)


def test_only_the_notebook_tools_name_the_course_folders():
    pattern = re.compile(r"(^|/)(notebooks|solutions|exercises)(/|$)")  # the folders; any file may be a .ipynb
    readers = {rel(path) for root in (ROOT, COURSE) for path in sources(root)
               if not (root == COURSE and path.relative_to(COURSE).as_posix().startswith(NOTEBOOK_READERS))
               and any(pattern.search(text) for text in code_strings(path.read_text()))}
    assert not readers, f"{sorted(readers)}: name the notebook folders only in gancourse's {NOTEBOOK_READERS}"


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


def notebook_imports(path: Path) -> set[str]:
    """The modules a notebook's code cells import, as dotted names ('ganlib.models', 'gancourse.checks')."""
    found = set()
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        source = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("!", "%")))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_no_notebook_imports_a_benchmark_or_the_command_line():
    forbidden = re.compile(r"^(gancourse\.bench|gancourse\.__main__|ganlib\.__main__)(\.|$)")
    wrong = {f"{rel(path)}: {name}" for folder in NOTEBOOK_FOLDERS for path in sorted((REPO / folder).glob("*.ipynb"))
             for name in notebook_imports(path) if forbidden.match(name)}
    assert not wrong, f"{sorted(wrong)}: read a benchmark's figures with gancourse.results, run a command with " \
                      f"subprocess"


def test_the_notebook_import_reader_sees_both_forms(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": ["!pip list\n", "from gancourse import bench\n"]},
                    {"cell_type": "markdown", "source": ["import gancourse.__main__"]},
                    {"cell_type": "code", "source": ["import ganlib.__main__ as cli\n"]}]}
    (tmp_path / "x.ipynb").write_text(json.dumps(nb))
    assert notebook_imports(tmp_path / "x.ipynb") == {"gancourse", "gancourse.bench", "ganlib.__main__"}


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_no_file_is_too_long_to_read():
    long = {rel(p) for p in sources(ROOT) if lines(p) > MAX_LINES}
    long |= {rel(p) for p in sources(COURSE) if lines(p) > MAX_TOOL_LINES}
    assert not long, f"over {MAX_LINES} lines in ganlib or {MAX_TOOL_LINES} in gancourse: {sorted(long)}"


def test_the_library_reads_in_an_afternoon():
    total = sum(lines(p) for p in sources(ROOT))
    assert total <= MAX_LIBRARY_LINES, f"ganlib has {total} lines, more than {MAX_LIBRARY_LINES}: move run support " \
                                       f"to gancourse, or make the library shorter"


def test_every_module_is_an_attribute_of_the_package_without_importing_torch():
    """`import ganlib` then `ganlib.models.dcgan`, `ganlib.viz`, ... work without importing them first, and the
    package itself imports no torch (so the command line can say one line for a Ctrl-C while torch loads)."""
    import subprocess
    import sys

    code = ("import sys, ganlib; assert 'torch' not in sys.modules; "
            "print(ganlib.models.dcgan.Generator.__name__, ganlib.viz.image_grid.__name__, ganlib.setup.__name__, "
            "ganlib.GanlibError.__name__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split() == ["Generator", "image_grid", "setup", "GanlibError"], r.stderr
    assert {"models", "viz", "data", "train", "setup"} <= set(dir(ganlib)) and "torch" not in dir(ganlib)


def test_every_module_lists_its_public_names_in_all():
    """Each library module's `__all__` (what `help(module)` and `from module import *` show) holds its own public
    functions and classes, and names only what the module has."""
    import importlib

    missing, wrong = [], []
    for path in sources():
        name = ".".join(("ganlib", *path.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                   and not n.name.startswith("_")}
        if not defined:
            continue
        module = importlib.import_module(name)
        listed = getattr(module, "__all__", None)
        if listed is None:
            missing.append(name)
            continue
        missing += [f"{name}.{d}" for d in sorted(defined - set(listed))]
        wrong += [f"{name}.{n}" for n in listed if not hasattr(module, n)]
    assert not missing and not wrong, (missing, wrong)


def test_every_public_function_and_class_of_the_library_has_a_docstring():
    undocumented = [f"{rel(path)}: {node.name}" for path in sources()
                    for node in ast.parse(path.read_text()).body
                    if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")
                    and not ast.get_docstring(node)]
    assert not undocumented, undocumented


def test_the_readme_samples_file_is_ignored_by_git():
    """The README's `sample ... --out FILE` writes FILE in the course folder: .gitignore keeps it out of commits."""
    readme = (ROOT.parent / "README.md").read_text()
    written = re.findall(r"python -m gancourse sample \S+ .*--out (\S+)", readme)
    ignored = (ROOT.parent / ".gitignore").read_text().split()
    assert written and all(name in ignored for name in written), (written, ignored)

"""Every package that ganlib imports is declared in pyproject.toml: in `dependencies`, or in the extra that the
optional feature needing it names (an undeclared one works on a developer's machine and fails on a fresh one)."""

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# import name -> the distribution that provides it, where the two differ
DISTRIBUTION = {"sklearn": "scikit-learn", "PIL": "pillow", "IPython": "ipython"}
PROVIDED_BY = {"ipython": "ipywidgets"}  # a dependency of a declared package, imported only where that one is
# an extra's package; Colab's own module (never installed); what `bench chapters` runs notebooks with (dev)
OPTIONAL = {"torch_fidelity": "fid", "google": None, "nbclient": "dev", "psutil": "dev"}


def declared() -> tuple[set[str], dict[str, set[str]]]:
    text = (ROOT / "pyproject.toml").read_text()
    names = re.compile(r'"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*[<>=!~;]')

    def listed(body: str) -> set[str]:
        return {m.lower() for m in names.findall(body)}

    deps = listed(re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1))
    extras_block = re.search(r"^\[project.optional-dependencies\]\n(.*?)^\[", text, re.S | re.M).group(1)
    extras = {m[1]: listed(m[2]) for m in re.finditer(r"^(\w+) = \[(.*?)\]", extras_block, re.M | re.S)}
    return deps, extras


def imported() -> set[str]:
    found = set()
    for path in [*(ROOT / "ganlib").rglob("*.py"), *(ROOT / "gancourse").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name not in ("ganlib", "gancourse")}


def test_every_imported_package_is_declared():
    deps, extras = declared()
    assert {"scipy", "torch", "ipywidgets"} <= deps and extras["fid"] == {"torch-fidelity"}
    assert {"pytest", "nbval", "ruff", "nbclient", "torch-fidelity"} <= extras["dev"]
    missing = []
    for name in sorted(imported()):
        if name in OPTIONAL:
            assert OPTIONAL[name] is None or DISTRIBUTION.get(name, name.replace("_", "-")) in extras[OPTIONAL[name]]
            continue
        dist = DISTRIBUTION.get(name, name).lower()
        if dist not in deps and PROVIDED_BY.get(dist) not in deps:
            missing.append(f"{name} ({dist})")
    assert not missing, f"ganlib imports packages pyproject.toml does not declare: {', '.join(missing)}"


def test_requirements_install_the_library_with_its_tools_and_pin_nothing():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    lines = [line for line in lines if line]
    assert "-e .[dev]" in lines and any(line.startswith("jupyterlab") for line in lines)
    assert not any("torch" in line or "==" in line for line in lines)  # Colab's (or a CPU-only) torch is kept

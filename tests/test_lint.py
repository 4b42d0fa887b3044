"""`ruff check` (configured in pyproject.toml) on the library, the tests and every notebook, as part of `pytest`."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINTED = ["ganlib", "gancourse", "tests", "conftest.py", "notebooks", "solutions", "exercises"]


def test_ruff_finds_nothing():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                           *LINTED], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"ruff check found problems (`ruff check --fix` repairs some):\n{done.stdout}" + (
        done.stderr)

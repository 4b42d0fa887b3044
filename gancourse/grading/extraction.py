"""Extraction: the notebook's functions, classes, literal constants and the imports they use, defined in a fresh
module of the submission's process (the notebook is not run top to bottom)."""

from __future__ import annotations

import ast
import re
import sys
import time
import types

from ganlib.errors import first_line

from .chapters import parse_cell
from .limits import TimeUp, alarm


def define(cells: list[tuple[int, str]], calls: list[str], deadline: float,
            parts: int) -> tuple[object, list[str], dict[str, str]]:
    """Define the notebook's functions, classes, literal constants and the imports they use in a fresh module,
    within an equal share (1 / `parts`) of the time left before `deadline`. Each statement may use what is
    left of that share, less a little for each statement after it, so that a loop in one (in a class body, a
    decorator, a default argument) loses that statement only.

    Returns the module, notes for the feedback (syntax errors, failed imports), and for each name defined in
    a cell that could not be parsed, where that cell is."""
    import linecache

    module = types.ModuleType("submission")
    sys.modules["submission"] = module
    notes, broken, kept, sources = [], {}, [], {}
    wanted = {node.id for call in calls for node in ast.walk(ast.parse(call, mode="eval"))
              if isinstance(node, ast.Name)}
    for number, source in cells:
        filename = f"<cell {number}>"
        tree, error = parse_cell(source, filename)
        if tree is None:
            where = f"cell {number}, which has a syntax error at line {error.lineno} ({error.msg})"
            notes.append(f"cell {number} has a syntax error at line {error.lineno} ({error.msg}); the grader "
                         f"skipped that cell.")
            for name in re.findall(r"^\s*(?:async\s+)?(?:def|class)\s+(\w+)", source, re.M):
                broken[name] = where
            continue
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # for tracebacks
        sources[filename] = source
        flags = 0
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                import __future__

                for alias in node.names:
                    flags |= getattr(getattr(__future__, alias.name, None), "compiler_flag", 0)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
                kept.append((filename, flags, node))
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if all(isinstance(t, ast.Name) for t in targets) and (
                        _is_literal(node.value) or any(t.id in wanted for t in targets)):
                    kept.append((filename, flags, node))
    used = wanted | {n.id for _, _, node in kept if not isinstance(node, (ast.Import, ast.ImportFrom))
                     for n in ast.walk(node) if isinstance(n, ast.Name)}
    kept = [k for k in kept if not isinstance(k[2], (ast.Import, ast.ImportFrom)) or _binds(k[2], used)]
    end = time.time() + max(0.05, (deadline - 1.0 - time.time()) / max(1, parts))
    for k, (filename, flags, node) in enumerate(kept):
        text = (ast.get_source_segment(sources[filename], node) or "?").splitlines()[0][:80]
        where = f"{filename.strip('<>')}, line {node.lineno}: `{text}`"
        try:
            with alarm(max(time.time() + 0.05, end - 0.02 * (len(kept) - k - 1))):
                code = compile(ast.Module(body=[node], type_ignores=[]), filename, "exec", flags=flags,
                               dont_inherit=True)
                exec(code, module.__dict__)
        except TimeUp:
            notes.append(f"{where} took too long to define (a loop in a class body, a decorator or a default "
                         f"argument?); the grader skipped it.")
        except Exception as e:
            notes.append(f"{where} raised {type(e).__name__}: {first_line(e)}")
    return module, notes, broken


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def _binds(node: ast.Import | ast.ImportFrom, used: set[str]) -> bool:
    """Whether an import binds a name that the kept code uses (`import *` always counts)."""
    for alias in node.names:
        if alias.name == "*":
            return True
        bound = alias.asname or (alias.name.split(".")[0] if isinstance(node, ast.Import) else alias.name)
        if bound in used:
            return True
    return False

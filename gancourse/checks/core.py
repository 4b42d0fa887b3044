"""The machinery every chapter's exercise checks share: results, diagnosed mistakes, strict mode.

Each ``check_<exercise>(fn)`` calls the student's function on random inputs (several seeds and shapes),
compares it with the library's reference, and, when they differ, tries the typical mistakes one by one so
the message names the mistake ("wrong sign", "you forgot to detach", ...) instead of showing a bare
assertion. It returns a `CheckResult`, which a notebook displays as one line.

With GANLIB_STRICT_CHECKS=1 (the test suite sets it) a check that does not pass raises `CheckFailed` with
the same message, so that a broken solution notebook fails CI at the check that caught it.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class CheckResult:
    """The outcome of one exercise check."""

    exercise: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        mark = "PASSED" if self.passed else "NOT YET"
        return f"[{mark}] {self.exercise}: {self.message}"

    def _repr_html_(self) -> str:
        import html

        colour = "#1a7f37" if self.passed else "#b3261e"
        mark = "&#10004; passed" if self.passed else "&#10008; not yet"
        return (f'<div style="border-left:4px solid {colour};padding:4px 8px"><b style="color:{colour}">{mark}'
                f"</b> <code>{html.escape(self.exercise)}</code>: {html.escape(self.message)}</div>")


class Mistake(Exception):
    """Raised inside a check body with the message to show the student."""


class CheckFailed(Exception):
    """A check did not pass while GANLIB_STRICT_CHECKS=1."""


def run_check(exercise: str, body: Callable[[], str | None]) -> CheckResult:
    """Run a check body; map the student's exceptions and diagnosed mistakes to a CheckResult."""
    result = _run(exercise, body)
    if not result.passed and os.environ.get("GANLIB_STRICT_CHECKS") == "1":
        raise CheckFailed(repr(result))
    return result


def _run(exercise: str, body: Callable[[], str | None]) -> CheckResult:
    try:
        note = body()
    except Mistake as m:
        return CheckResult(exercise, False, str(m))
    except NotImplementedError:
        return CheckResult(exercise, False, "not implemented yet: replace the line `raise NotImplementedError(...)` "
                                            "with your code, run that cell, then run this check again.")
    except Exception as e:  # the student's code crashed: say where, in one or two lines
        where = _student_frame(e)
        return CheckResult(exercise, False, f"your code raised {type(e).__name__}: {str(e).strip()[:200]}{where}")
    return CheckResult(exercise, True, note or "correct on every test input.")


def _student_frame(e: BaseException) -> str:
    """Where in the student's code `e` was raised, " (at cell N, line M: `code`)", or "". An exception that
    the grader brought back from the student's process carries that text as `student_frame`."""
    if isinstance(getattr(e, "student_frame", None), str):
        return e.student_frame
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "ganlib" not in f.filename.replace("\\", "/")
              and "torch" not in f.filename]
    if not frames or not frames[-1].line:
        return ""
    cell = f"{frames[-1].filename[1:-1]}, " if frames[-1].filename.startswith("<cell ") else ""  # from the grader
    return f" (at {cell}line {frames[-1].lineno}: `{frames[-1].line}`)"


def diagnose(out, known: list[tuple[object, str]], matches: Callable[[object, object], bool] | None = None) -> None:
    """Raise the Mistake of the first typical wrong answer in `known` ((value, message) pairs) that `out` matches;
    return when it is none of them, so that the caller can say what is wrong in general. By default `out` and
    `value` are tensors that match when they are `close`; `matches(out, value)` compares
    otherwise (numbers within a tolerance; a wrong variant's settings, run and compared by the caller)."""
    for value, message in known:
        if (matches(out, value) if matches else close(out, value)):
            raise Mistake(message)


def answers(fn: Callable) -> Callable:
    """The student's function as a check calls it: every result goes through `plain` before the check sees it."""
    if isinstance(fn, type):  # a class: its instances' outputs reach the checks through `close` and `as_scalar`
        return fn

    def call(*args, **kwargs):
        return plain(fn(*args, **kwargs))

    call.__name__ = getattr(fn, "__name__", "answer")
    return call


def plain(value):
    """A student's value as the checks read it: a tensor becomes a plain `torch.Tensor` with the same data and
    autograd graph but none of the instance attributes a value could carry to shadow its methods (a `reshape`
    or `detach` that returns the right answer); tuples and lists are converted item by item, anything else is
    returned as it is. A tensor subclass is refused: its methods would be the student's code."""
    if isinstance(value, torch.Tensor):
        if type(value) not in (torch.Tensor, torch.nn.Parameter):
            raise Mistake(f"return a plain torch.Tensor, not a {type(value).__name__}: compute the result with "
                          f"torch operations.")
        return torch.Tensor.as_subclass(value, torch.Tensor)
    if type(value) in (tuple, list):
        return type(value)(plain(v) for v in value)
    return value


def as_scalar(out, what: str) -> torch.Tensor:
    out = plain(out)
    if not isinstance(out, torch.Tensor):
        raise Mistake(f"{what} should return a torch scalar tensor (so that .backward() works), "
                      f"got {type(out).__name__}.")
    if out.numel() != 1:
        raise Mistake(f"{what} should return one number (the mean over the batch), got a tensor of shape "
                      f"{list(out.shape)}: take .mean() over the batch.")
    return out.reshape(())


def backward(loss: torch.Tensor) -> None:
    if not loss.requires_grad:
        raise Mistake("no gradient reaches the logits: do not call .item(), .detach() or torch.tensor(...) "
                      "inside the loss; compute it with torch operations on the logits.")
    loss.backward()


def close(out, ref, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """The one comparison of a student's value `out` with the reference `ref` (tensors or numbers): the same
    shape exactly (no broadcasting) and equal within the tolerance. A NaN or inf in `out` where `ref` is finite
    raises the Mistake that says so (`finite`)."""
    out, ref = _tensor(out), _tensor(ref)
    finite(out, torch.isfinite(ref) if out.shape == ref.shape else None)
    if out.shape != ref.shape:
        return False
    return bool(torch.allclose(out.detach().double(), ref.detach().double(), rtol=rtol, atol=atol, equal_nan=True))


def finite(out, where: torch.Tensor | None = None) -> None:
    """Raise a Mistake when the student's value `out` holds a NaN or an inf (only where `where` is True, if given)."""
    out = _tensor(out).detach()
    bad = ~torch.isfinite(out) if where is None else ~torch.isfinite(out) & where
    if not bool(bad.any()):
        return
    if bool((bad & torch.isnan(out)).any()):
        raise Mistake("your value contains NaN (not a number) where the answer is a finite number: look for 0 / 0, "
                      "the log or square root of a negative number or of 0, or inf - inf.")
    raise Mistake("your value contains inf where the answer is a finite number: look for a division by 0, log(0), "
                  "or an exp() that overflows (work with logits and F.softplus / logsumexp instead).")


def _tensor(value) -> torch.Tensor:
    """A value to compare as a plain tensor: a tensor (see `plain`), a number, or a numpy array or number."""
    if isinstance(value, torch.Tensor):
        return plain(value)
    if isinstance(value, (bool, int, float)):
        return torch.tensor(float(value), dtype=torch.float64)
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "biuf":
        return torch.from_numpy(np.asarray(value, dtype=np.float64))
    raise Mistake(f"expected a number or a tensor, got {type(value).__name__}.")


def show(t: torch.Tensor) -> str:
    values = ", ".join(f"{v:.2f}" for v in t[:3].tolist())
    return f"[{values}{', ...' if t.numel() > 3 else ''}]"

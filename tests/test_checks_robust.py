"""No wrong answer passes a check: every check in gancourse.checks, given the solution's own answer spoiled in one
way (a NaN, an inf, an empty tensor, a wrong shape, a shape that only broadcasts to the right one, or a wrong
value whose methods are shadowed to return the right one), fails; and a NaN or an inf is named as such."""

import sys
import time
from pathlib import Path

import pytest
import torch
from check_helpers import lenient  # noqa: F401  (an autouse fixture)

from gancourse import checks, grading
from gancourse.checks import core

ROOT = Path(__file__).resolve().parents[1]
SHADOWED = ("reshape", "view", "detach", "double", "float", "clone", "item", "tolist", "flatten", "to", "cpu",
            "numpy", "mean", "sum", "abs", "norm", "squeeze", "expand_as", "__len__")


def reference_answers() -> dict:
    """exercise -> the solution notebook's own answer, defined the way the grader defines a submission's."""
    found = {}
    for chapter in grading.course_chapters():
        path = ROOT / "solutions" / f"{chapter.name}.ipynb"
        cells = grading.notebook_code(__import__("json").loads(path.read_text()))
        calls = [e.call for e in chapter.exercises]
        module, notes, _ = grading._define(cells, calls, time.time() + 60, 1)
        found.update({e.name: eval(e.call, module.__dict__) for e in chapter.exercises})
    sys.modules.pop("submission", None)
    return found


ANSWERS = reference_answers()


def spoil(value, kind: str):
    """`value` (a result) with its first tensor or number spoiled: (the spoiled result, whether any was found)."""
    if isinstance(value, (tuple, list)):
        items, done = list(value), False
        for k, item in enumerate(items):
            items[k], done = spoil(item, kind)
            if done:
                break
        return type(value)(items), done
    if isinstance(value, bool) or not isinstance(value, (torch.Tensor, int, float)):
        return value, False
    t = value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
    t = t if t.is_floating_point() else t.double()
    first = torch.zeros(t.shape, dtype=torch.bool).flatten()
    first[:1] = True
    first = first.reshape(t.shape)
    if kind in ("nan", "inf"):
        return t + torch.where(first, float(kind), 0.0).to(t.dtype), True
    if kind == "empty":
        return t.new_empty(0), True
    if kind == "wrong_shape":  # one number too many
        return torch.cat([t.flatten(), t.flatten()[:1]]), True
    if kind == "broadcastable":  # the right values, twice over a new leading axis
        return t.expand(2, *t.shape), True
    assert kind == "shadowed"  # a wrong value whose methods answer with the right one
    wrong = torch.full_like(t.detach(), 123.0).requires_grad_(t.requires_grad)
    for name in SHADOWED:
        if hasattr(t, name):
            setattr(wrong, name, getattr(t, name))
    return wrong, True


KINDS = ("nan", "inf", "empty", "wrong_shape", "broadcastable", "shadowed")


def spoiled(fn, kind: str):
    """`fn` with its result spoiled; for an exercise that answers in place (returns None and updates the module it
    is given first, as the EMA of G does), that module's first parameter is spoiled instead."""

    def answer(*args, **kwargs):
        result = fn(*args, **kwargs)
        if result is None and args and isinstance(args[0], torch.nn.Module):
            first = next(args[0].parameters())
            first.data = torch.Tensor.detach(spoil(first.data, kind)[0])  # not its own, maybe shadowed, detach
            return None
        return spoil(result, kind)[0]

    return answer


def test_every_check_passes_the_solutions_answer():
    assert sorted(ANSWERS) == sorted(checks.CHECKS)
    for name, check in checks.CHECKS.items():
        result = check(ANSWERS[name])
        assert result.passed, (name, result.message)


@pytest.mark.parametrize("kind", KINDS)
def test_every_check_fails_a_spoiled_answer(kind):
    passed, unnamed = {}, {}
    for name, check in checks.CHECKS.items():
        result = check(spoiled(ANSWERS[name], kind))
        if result.passed:
            passed[name] = result.message
        elif kind in ("nan", "inf") and f"contains {'NaN' if kind == 'nan' else 'inf'}" not in result.message:
            unnamed[name] = result.message
    assert (passed, unnamed) == ({}, {})


def test_the_comparison_helper():
    ref = torch.tensor([1.0, 2.0])
    assert core.close(ref.clone(), ref)
    assert not core.close(torch.tensor([[1.0, 2.0]]), ref)  # broadcasts, but is not the same shape
    assert not core.close(torch.empty(0), ref) and not core.close(torch.empty(0), torch.tensor(1.0))
    for bad, word in ((torch.tensor([float("nan"), 2.0]), "NaN"), (torch.tensor([1.0, float("inf")]), "inf")):
        with pytest.raises(core.Mistake, match=f"your value contains {word}"):
            core.close(bad, ref)
    with pytest.raises(core.Mistake, match="your value contains NaN"):
        core.close(float("nan"), 1.0)
    assert core.close(torch.tensor([float("inf")]), torch.tensor([float("inf")]))  # where the reference has it too
    shadowed = torch.zeros(())
    shadowed.reshape = lambda *a: torch.tensor(5.0)
    assert core.as_scalar(shadowed, "loss").item() == 0.0 and "reshape" not in vars(core.plain(shadowed))
    assert not core.close(shadowed, torch.tensor(5.0))

    class Sneaky(torch.Tensor):
        pass

    with pytest.raises(core.Mistake, match="plain torch.Tensor"):
        core.plain(torch.zeros(2).as_subclass(Sneaky))

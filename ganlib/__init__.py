"""ganlib: the library behind the GAN course.

One module per concept (see the README for the map): `data`, `losses`, `layers`, `models`, `train`,
`metrics`, `viz`; the course's tools (checks, presets, grader, benchmarks) are `gancourse`, which ganlib never
imports. Notebooks start with ``env = ganlib.setup()``.

Every module is an attribute of the package (``ganlib.models.dcgan`` works after ``import ganlib``); each is
imported the first time it is used, so that ``import ganlib`` does not load torch until it is needed.
"""

import importlib
import os
import pkgutil
import sys

__version__ = "0.1.0"

# OpenMP, which torch loads, reads its wait policy once, when torch is first imported. Its default has idle threads
# spin, which makes a step ten times slower or worse when other programs run; PASSIVE has them sleep
# (`env.default_threads`; docs/benchmarks.md, "CPU threads").
TORCH_FIRST = "torch" in sys.modules  # torch was imported before ganlib: the policy is whatever was set then
OPENMP_WAIT = (os.environ.get("OMP_WAIT_POLICY", "") if TORCH_FIRST
               else os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")).strip().upper()  # the policy in force

MODULES = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "__main__"))  # data, models, ...
_NAMES = {"setup": "env", "GanlibError": "errors"}  # the names the package itself offers, and their module

__all__ = ["setup", "GanlibError", "__version__", *MODULES]


def __getattr__(name: str):
    """`ganlib.setup`, `ganlib.GanlibError` and every module of `MODULES`, imported on first use."""
    if name in MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

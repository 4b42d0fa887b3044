"""Test-session settings, set before any notebook kernel starts (kernels inherit the environment).

- GANLIB_PROFILE=smoke: every notebook runs its tiny budget.
- GANLIB_OFFLINE=1: nothing downloads; online datasets fail with their one-line message.
- GANLIB_STRICT_CHECKS=1: an exercise check that does not pass raises, so a broken solution fails the run.
- GANLIB_CACHE: a fresh cache folder for this session (metric classifiers are trained once, in seconds), deleted
  when the session ends.
- GANLIB_SMOKE_RUNS: where the notebooks' run folders go (`Env.run_folder`), deleted when the session ends.
- MPLBACKEND=Agg: no windows.
"""

import os
import tempfile

os.environ["GANLIB_PROFILE"] = "smoke"
os.environ["GANLIB_OFFLINE"] = "1"
os.environ["GANLIB_STRICT_CHECKS"] = "1"
if "GANLIB_CACHE" not in os.environ:
    _cache = tempfile.TemporaryDirectory(prefix="ganlib-test-cache-")  # removed at exit by its finaliser
    os.environ["GANLIB_CACHE"] = _cache.name
if "GANLIB_SMOKE_RUNS" not in os.environ:
    _runs = tempfile.TemporaryDirectory(prefix="ganlib-smoke-runs-")  # removed at exit by its finaliser
    os.environ["GANLIB_SMOKE_RUNS"] = _runs.name
os.environ["MPLBACKEND"] = "Agg"
os.environ.setdefault("OMP_NUM_THREADS", "1")

"""Test-session settings, set before any notebook kernel starts (kernels inherit the environment).

- GANLIB_PROFILE=smoke: every notebook runs its tiny budget.
- GANLIB_OFFLINE=1: nothing downloads; online datasets fail with their one-line message.
- GANLIB_STRICT_CHECKS=1: an exercise check that does not pass raises, so a broken solution fails the run.
- GANLIB_CACHE: a fresh cache folder for this session (metric classifiers are trained once, in seconds).
- MPLBACKEND=Agg: no windows.
"""

import os
import tempfile

os.environ["GANLIB_PROFILE"] = "smoke"
os.environ["GANLIB_OFFLINE"] = "1"
os.environ["GANLIB_STRICT_CHECKS"] = "1"
os.environ.setdefault("GANLIB_CACHE", tempfile.mkdtemp(prefix="ganlib-test-cache-"))
os.environ["MPLBACKEND"] = "Agg"
os.environ.setdefault("OMP_NUM_THREADS", "1")

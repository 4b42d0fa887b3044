"""A submission's processes share one budget (resource limits alone are per process): memory beyond what they
held at the start, and one CPU core, so that a submission running many busy processes does not slow down
another student's grading by more than the issue's bound (2x)."""

import sys
import time

import pytest
from test_grading import EXERCISE, SOLUTION, load, save
from test_grading_attacks import attacker

from gancourse import grading
from gancourse.grading import sandbox

EXERCISES = len(grading.read_chapter(SOLUTION).exercises)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the keeper reads Linux's /proc")


def test_memory_is_counted_over_all_processes(tmp_path):
    folder = tmp_path / "submissions"
    save(attacker("""
        import os, time
        for _ in range(4):  # 4 x 300 MB, each under the per-process limit of 512 MB
            if os.fork() == 0:
                block = bytearray(300 * 2**20)
                block[::4096] = b"x" * len(block[::4096])  # touch every page
                time.sleep(30)
                os._exit(0)
        time.sleep(30)
    """), folder / "hog.ipynb")
    save(load(SOLUTION), folder / "good.ipynb")
    graded = {g.student: g for g in grading.grade(folder, tmp_path / "grades.csv", timeout=30, jobs=2,
                                                  memory_mb=512, log=lambda _: None)}
    hog = graded["hog"]
    assert hog.total == 0 and hog.seconds < 15, (hog.seconds, hog.notes)
    assert any("used more than 512 MB of memory together (--memory)" in n for n in hog.notes), hog.notes
    assert graded["good"].total == EXERCISES


def test_many_busy_processes_slow_no_one_else(tmp_path):
    spinner = attacker("""
        import os
        for _ in range(40):
            if os.fork() == 0:
                while True:
                    pass
        while True:
            pass
    """)
    alone, crowded = tmp_path / "alone", tmp_path / "crowded"
    for folder in (alone, crowded):
        save(load(SOLUTION), folder / "good.ipynb")
    save(spinner, crowded / "spinner.ipynb")
    save(load(EXERCISE), crowded / "zz-after.ipynb")  # graded beside the spinner too, once the good one is done

    def seconds(folder):
        graded = {g.student: g for g in grading.grade(folder, folder.with_suffix(".csv"), timeout=10, jobs=2,
                                                      log=lambda _: None)}
        assert graded["good"].total == EXERCISES
        return graded["good"].seconds, graded

    base, _ = seconds(alone)
    start = time.perf_counter()
    with_spinner, graded = seconds(crowded)
    assert graded["spinner"].total == 0 and time.perf_counter() - start < 30
    assert with_spinner <= 2 * base + 0.5, (with_spinner, base, sandbox.CPU_CORES)

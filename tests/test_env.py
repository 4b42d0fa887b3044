"""The environment `setup` chooses: profile validation and CPU threads."""

import pytest
import torch

from ganlib import env
from ganlib.errors import GanlibError


def test_threads_follow_omp_num_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        env.setup(quiet=True)
        assert torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert env.default_threads() == max(1, min(4, __import__("os").cpu_count() or 1))
        env.setup(threads=2, quiet=True)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_unknown_profile_is_named(monkeypatch):
    monkeypatch.setenv("GANLIB_PROFILE", "laptop")
    with pytest.raises(GanlibError, match="laptop.*smoke, cpu, gpu"):
        env.current_profile()

"""The environment `setup` chooses: profile validation and CPU threads."""

import sys

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


def test_setup_says_how_to_get_a_gpu_on_colab_only(monkeypatch, capsys):
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        env.setup(threads=1)
        assert env.COLAB_WITHOUT_GPU not in capsys.readouterr().out  # a laptop's CPU is no mistake
        monkeypatch.setitem(sys.modules, "google.colab", object())
        env.setup(threads=1)
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith("device cpu (1 CPU threads, Colab)") and lines[1] == env.COLAB_WITHOUT_GPU
        assert "Runtime > Change runtime type" in lines[1]
    finally:
        torch.set_num_threads(before)

"""The environment `setup` chooses: profile validation and CPU threads."""

import os
import sys
from pathlib import Path

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


def test_smoke_run_folders_are_deleted_with_their_process(tmp_path):
    """In the smoke profile a run folder is temporary: under $GANLIB_SMOKE_RUNS when set (the test session's,
    deleted at its end), else under a folder of the process's own, deleted when it exits."""
    import subprocess

    code = "from ganlib import env; print(env.Env('cpu', 'smoke', 0).run_folder('ch'))"
    environ = {k: v for k, v in os.environ.items() if k != "GANLIB_SMOKE_RUNS"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ)
    folder = Path(r.stdout.strip())
    assert r.returncode == 0 and folder.name.startswith("ch-") and folder.parent.name.startswith("ganlib-smoke-runs-")
    assert not folder.parent.exists()  # gone with the process
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**environ, "GANLIB_SMOKE_RUNS": str(tmp_path)})
    assert r.returncode == 0 and Path(r.stdout.strip()).parent == tmp_path and Path(r.stdout.strip()).is_dir()


def test_devices_are_checked_with_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(GanlibError, match="unknown device 'gpu': use cpu, cuda, cuda:N"):
        env.check_device("gpu")
    with pytest.raises(GanlibError, match="'cuda': this machine has no CUDA GPU that torch can use"):
        env.default_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(GanlibError, match="'cuda:2': this machine has 2 CUDA GPU.s., cuda:0 to cuda:1"):
        env.check_device("cuda:2")
    assert env.check_device("cuda:1") == torch.device("cuda", 1) and env.check_device("cpu") == torch.device("cpu")

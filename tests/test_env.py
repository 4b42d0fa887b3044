"""The environment `setup` chooses: profile validation and CPU threads."""

import os
import sys
from pathlib import Path

import pytest
import torch

import ganlib
from ganlib import env
from ganlib.errors import GanlibError


def test_threads_follow_omp_num_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        env.setup(quiet=True)
        assert torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr(ganlib, "OPENMP_WAIT", "PASSIVE")
        assert env.default_threads() == min(4, env.physical_cores())
        monkeypatch.setattr(ganlib, "OPENMP_WAIT", "")  # OpenMP's default: its threads spin while they wait
        assert env.default_threads() == 1
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
        assert lines[0].startswith("device cpu (1 CPU thread") and ", Colab)" in lines[0]
        assert lines[1] == env.COLAB_WITHOUT_GPU
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


def test_physical_cores_count_each_core_once():
    """Against /proc/cpuinfo read independently: the distinct (package, core) pairs of the CPUs this process
    may run on."""
    info = Path("/proc/cpuinfo")
    if not info.is_file() or not hasattr(os, "sched_getaffinity"):
        pytest.skip("needs Linux's /proc/cpuinfo")
    cores, cpu = set(), {}
    for block in info.read_text().strip().split("\n\n"):
        fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in block.splitlines() if ":" in line)}
        cpu[int(fields["processor"])] = (fields.get("physical id"), fields.get("core id", fields["processor"]))
    cores = {cpu[i] for i in os.sched_getaffinity(0)}
    assert env.physical_cores() == len(cores)


def _setup_line(code: str, **environ) -> str:
    import subprocess

    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**clean, "GANLIB_PROFILE": "smoke", "CUDA_VISIBLE_DEVICES": "", **environ})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_setup_chooses_threads_by_how_openmp_waits():
    """ganlib, imported before torch, has OpenMP wait passively and uses every core (at most 4); after torch,
    OpenMP spins, so one thread unless asked for more; either way the set-up line says which."""
    cores = min(4, env.physical_cores())
    out = _setup_line("import os, ganlib, torch; ganlib.setup(); print(os.environ['OMP_WAIT_POLICY'], "
                      "torch.get_num_threads())")
    assert f"({cores} CPU thread{'s' if cores > 1 else ''}, OpenMP waiting passively)" in out
    assert out.splitlines()[-1] == f"PASSIVE {cores}"
    out = _setup_line("import torch, ganlib; ganlib.setup(); print(torch.get_num_threads())")
    assert "(1 CPU thread: torch was imported before ganlib" in out and "import ganlib first" in out
    assert out.splitlines()[-1] == "1"
    out = _setup_line("import torch, ganlib; ganlib.setup(threads=3); print(torch.get_num_threads())")
    assert "(3 CPU threads, OpenMP spinning while it waits)" in out and out.splitlines()[-1] == "3"
    out = _setup_line("import ganlib, torch; ganlib.setup(); print(torch.get_num_threads())", OMP_NUM_THREADS="3")
    assert "(3 CPU threads, OpenMP waiting passively)" in out and out.splitlines()[-1] == "3"
    out = _setup_line("import torch, ganlib; ganlib.setup()", OMP_WAIT_POLICY="passive")  # set before torch
    assert f"({cores} CPU thread{'s' if cores > 1 else ''}, OpenMP waiting passively)" in out


def test_bad_thread_count_is_named():
    with pytest.raises(GanlibError, match="threads=-1: give a number of CPU threads, 1 or more"):
        env.set_threads(-1)


def test_toy_models_train_with_their_presets_one_thread_and_restore_the_count():
    from gancourse import recipes

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        trainer = recipes.make_trainer("gan", profile="smoke", device="cpu", steps=4)
        assert trainer.cfg.threads == 1 == recipes.preset("gan", "cpu")["train"]["threads"]
        seen = []
        trainer.train(callback=lambda t: seen.append(torch.get_num_threads()), every=1, progress=False)
        assert seen == [1] * 4 and torch.get_num_threads() == 2
        trainer = recipes.make_trainer("gan", profile="smoke", device="cpu", steps=2, threads=2)  # overridden
        trainer.train(callback=lambda t: seen.append(torch.get_num_threads()), every=1, progress=False)
        assert seen[4:] == [2, 2]
        assert "threads" not in recipes.preset("dcgan", "cpu")["train"]  # the others: as set up
    finally:
        torch.set_num_threads(before)

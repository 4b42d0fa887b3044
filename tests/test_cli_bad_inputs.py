"""The command line's `train`, `sample` and `evaluate` given bad inputs: each is one line on stderr, a non-zero exit
code, no traceback, and every file already there is left as it was (nothing lost, overwritten or added); and
Ctrl-C keeps the work (a checkpoint saved at the step's end, said where) or says truly that there is none."""

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gancourse import launch
from gancourse.__main__ import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) and the sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Trained runs and samples files to give bad inputs next to: a gan run, a StyleGAN run, a run folder holding
    only checkpoint.prev.pt, one holding sample grids but no checkpoint, and samples files that are wrong."""
    w = tmp_path_factory.mktemp("world")
    assert main(["train", "gan", "--out", str(w / "gan"), "--profile", "smoke", "--steps", "2", "--set",
                 "checkpoint_every=1"]) == 0
    assert main(["train", "stylegan", "--out", str(w / "style"), "--profile", "smoke", "--steps", "1"]) == 0
    (w / "prev-only").mkdir()
    (w / "prev-only" / "checkpoint.prev.pt").write_bytes((w / "gan" / "checkpoint.prev.pt").read_bytes())
    (w / "grids-only" / "samples").mkdir(parents=True)
    (w / "grids-only" / "samples" / "step0001000.png").write_bytes(b"a grid")
    rng = np.random.default_rng(0)
    points = rng.normal(size=(100, 2)).astype(np.float32)
    np.savez(w / "points.npz", points=points)
    np.savez(w / "one.npz", points=points[:1])
    np.savez(w / "no-images.npz", images=np.zeros((0, 16, 16, 1), np.uint8))
    nan = points.copy()
    nan[[3, 50, 70]] = np.nan
    np.savez(w / "nan.npz", points=nan)
    np.savez(w / "nchw.npz", images=np.zeros((20, 1, 16, 16), np.uint8))
    (w / "text.npz").write_text("not an archive")
    return w


BAD_INPUTS = [  # (argv with {w} for the world folder, words the one line must hold)
    # devices, before any work
    (["train", "dcgan", "--out", "{w}/new", "--device", "cuda"], "this machine has no CUDA GPU"),
    (["train", "dcgan", "--out", "{w}/new", "--device", "cuda:3"], "this machine has no CUDA GPU"),
    (["train", "dcgan", "--out", "{w}/new", "--device", "foo"], "unknown device 'foo': use cpu, cuda"),
    (["sample", "{w}/gan", "--out", "{w}/s.npz", "--device", "cuda"], "this machine has no CUDA GPU"),
    (["sample", "{w}/gan", "--out", "{w}/s.npz", "--device", "foo"], "unknown device 'foo'"),
    # sizes and groups
    (["train", "dcgan", "--out", "{w}/new", "--batch-size", "100000"],
     "batch size 100000 is larger than the 1438 samples of digits: use --batch-size 1438 or less"),
    (["train", "pggan", "--out", "{w}/new", "--batch-size", "6"], "groups of 4, so the batch must be a multiple"),
    (["train", "stylegan", "--out", "{w}/new", "--batch-size", "6"], "groups of 4"),
    (["train", "gan", "--out", "{w}/new", "--set", "pack=2", "--batch-size", "7"], "packs of 2 samples"),
    # options of another recipe, datasets
    (["train", "dcgan", "--out", "{w}/new", "--set", "pack=2"], "pack is an option of gan, not of dcgan"),
    (["train", "dcgan", "--out", "{w}/new", "--set", "style_mixing=0.5"], "style_mixing is an option of stylegan"),
    (["train", "dcgan", "--out", "{w}/new", "--data", "folder:"], "folder: needs the path of a folder"),
    # run folders
    (["train", "gan", "--out", "{w}/gan"], "already holds a checkpoint"),
    (["train", "gan", "--out", "{w}/prev-only", "--resume"],
     "holds only the previous checkpoint checkpoint.prev.pt: rename it to checkpoint.pt and pass --resume"),
    (["train", "gan", "--out", "{w}/prev-only"], "holds only the previous checkpoint checkpoint.prev.pt"),
    (["train", "gan", "--out", "{w}/grids-only", "--resume"],
     "samples/step0001000.png is a sample grid, not a checkpoint"),
    # truncation
    (["sample", "{w}/style", "--out", "{w}/s.npz", "--truncation", "nan"], "truncation psi nan: use a number from 0"),
    (["sample", "{w}/style", "--out", "{w}/s.npz", "--truncation", "inf"], "truncation psi inf: use a number from 0"),
    (["sample", "{w}/style", "--out", "{w}/s.npz", "--truncation", "-1"], "truncation psi -1.0: use a number from 0"),
    (["sample", "{w}/style", "--out", "{w}/s.npz", "--truncation", "1.5"], "truncation psi 1.5"),
    (["sample", "{w}/gan", "--out", "{w}/s.npz", "--truncation", "0.5"], "has no truncation trick"),
    (["sample", "{w}/gan", "--out", "{w}/s.txt"], "must end in .npz"),
    (["sample", "{w}/gan", "--out", "{w}/s.npz", "--num", "0"], "--num 0: ask for at least one sample"),
    (["sample", "{w}/gan", "--out", "{w}/s.npz", "--class", "1"], "needs a class-conditional model"),
    (["sample", "{w}/nowhere", "--out", "{w}/s.npz"], "no checkpoint"),
    (["sample", "{w}/prev-only", "--out", "{w}/s.npz"],
     "only the previous one checkpoint.prev.pt: rename it to checkpoint.pt to use it"),
    # evaluate: counts, k, NaN, layout
    (["evaluate", "{w}/one.npz", "--data", "ring8"], "the file holds 1 points; the metrics need at least 2"),
    (["evaluate", "{w}/no-images.npz", "--data", "digits"], "the file holds 0 images"),
    (["evaluate", "{w}/points.npz", "--data", "ring8", "--k", "0"], "--k 0: precision and recall use the k nearest"),
    (["evaluate", "{w}/points.npz", "--data", "ring8", "--k", "100"], "k must be from 1 to 99"),
    (["evaluate", "{w}/nan.npz", "--data", "ring8"], "3 of the 100 points are NaN or infinite"),
    (["evaluate", "{w}/nchw.npz", "--data", "digits"], "channels first; `sample` writes them channels last"),
    (["evaluate", "{w}/points.npz", "--data", "digits"], "the file holds 2-D points, but digits is an image dataset"),
    (["evaluate", "{w}/text.npz", "--data", "digits"], "is not a readable .npz file"),
    (["evaluate", "{w}/none.npz", "--data", "digits"], "no samples file"),
    # those of the earlier reliability work (tests/test_cli.py)
    (["train", "vae", "--out", "{w}/new"], "unknown model 'vae'"),
    (["train", "dcgan", "--data", "mnsit", "--out", "{w}/new"], "unknown dataset 'mnsit'"),
    (["train", "dcgan", "--resolution", "24", "--out", "{w}/new"], "power of two"),
    (["train", "dcgan", "--out", "{w}/new", "--resume"], "there is no checkpoint"),
    (["train", "dcgan", "--out", "{w}/new", "--set", "lr_gg=3"], "lr_gg (did you mean lr_g?)"),
    (["train", "dcgan", "--out", "{w}/new", "--set", "lr_g=nan"], "lr_g must be a number > 0"),
    (["train", "dcgan", "--out", "{w}/new", "--set", "lr_g"], "write it as NAME=VALUE"),
    (["train", "dcgan", "--out", "{w}/new", "--steps", "0"], "steps must be a whole number >= 1"),
    (["train", "gan", "--out", "{w}/new", "--data", "digits"], "the gan model is for 2-D points"),
    (["train", "dcgan", "--out", "{w}/new", "--data", "ring8"], "dcgan needs images"),
    (["train", "dcgan", "--out", "{w}/new", "--data", "folder:{w}/nowhere"], "does not exist"),
    (["train", "dcgan", "--out", "{w}/new", "--data", "mnist"], "downloads are off"),
    (["train", "gan", "--out", "{w}/gan", "--resume", "--set", "pack=2"], "D pack 1 vs 2"),
    (["train", "gan", "--out", "{w}/gan", "--resume", "--seed", "3"], "was trained with seed=0"),
    (["train", "gan", "--out", "{w}/points.npz/run"], "cannot write to --out"),
]


@pytest.mark.parametrize("argv,message", BAD_INPUTS, ids=[" ".join(a[:2] + a[3:]) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_changes_no_file(world, capsys, monkeypatch, argv, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a machine with a GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    before = snapshot(world)
    code, _, err = run(capsys, *[a.format(w=world) for a in argv])
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert message in err, err
    assert snapshot(world) == before  # nothing lost, overwritten or added (no lock, no empty run folder either)


def test_evaluate_table_keeps_its_columns_apart(world, capsys):
    """Every number stands right-aligned under its column's name, with space between neighbours (the cells' widths
    differ from row to row: a negative KID with its std, a NaN)."""
    code, out, err = run(capsys, "evaluate", world / "points.npz", "--data", "ring8")
    assert code == 0, err
    header, *rows = out.splitlines()[1:]
    ends = [m.end() for m in re.finditer(r"\S+", header)]
    assert header.split() == ["modes", "hq", "reverse_kl", "fd", "kid", "precision", "recall"]
    assert [row[:9] for row in rows] == ["samples  ", "real data"]
    for row in rows:
        assert [m.end() for m in re.finditer(r"\S+", row[9:])] == [e - 9 for e in ends], row


def test_a_stale_lock_is_taken_over_and_a_live_one_refused(tmp_path, capsys):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its process id now names no process
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / launch.LOCK_FILE).write_text(f"{gone.pid}\n")
    code, out, err = run(capsys, "train", "gan", "--out", run_dir, "--profile", "smoke", "--steps", 1)
    assert code == 0 and "done: step 1" in out, err
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "config.json", "history.csv", "samples"]
    with launch.run_lock(tmp_path / "held"):  # a live holder: this process, as another trainer would be
        code, _, err = run(capsys, "train", "gan", "--out", tmp_path / "held", "--profile", "smoke")
        assert code == 2 and f"is in use by another trainer (pid {os.getpid()};" in err and err.count("\n") == 1
        assert sorted(p.name for p in (tmp_path / "held").iterdir()) == [launch.LOCK_FILE]
    assert not (tmp_path / "held").exists()  # the lock made the folder, and nothing else was written to it


def test_ctrl_c_before_the_first_step_is_one_line(tmp_path, capsys, monkeypatch):
    """Ctrl-C while torch and the recipes are imported, or while the data and networks are built: one line, which
    says that nothing was saved, and no run folder left behind."""
    from gancourse import __main__ as cli
    from gancourse import recipes

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(recipes, "make_trainer", interrupt)
    code, _, err = run(capsys, "train", "gan", "--out", tmp_path / "r", "--profile", "smoke")
    assert code == 130 and err == "interrupted before a checkpoint was saved: nothing to resume.\n"
    assert not (tmp_path / "r").exists()
    monkeypatch.setattr(recipes, "sample_from_run", interrupt)
    code, _, err = run(capsys, "sample", tmp_path / "r", "--out", tmp_path / "s.npz")
    assert code == 130 and err == "interrupted; no samples file was written.\n"
    monkeypatch.setattr(cli, "build_parser", interrupt)  # while the command line imports torch and the recipes
    code, _, err = run(capsys, "sample", tmp_path / "r", "--out", tmp_path / "s.npz")
    assert code == 130 and err == "interrupted.\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to another process is POSIX")
def test_ctrl_c_saves_a_checkpoint_at_the_step_boundary_and_a_second_trainer_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "r"
    cmd = [sys.executable, "-m", "gancourse", "train", "gan", "--out", str(run_dir), "--profile", "smoke", "--steps",
           "1000000", "--set", "log_every=1000000"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert p.stdout.readline().startswith("training gan on ring8")  # Ctrl-C now asks for a checkpoint
        code, _, err = run(capsys, "train", "gan", "--out", run_dir, "--profile", "smoke")  # a second trainer
        assert code == 2 and f"is in use by another trainer (pid {p.pid};" in err and err.count("\n") == 1
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        _, stderr = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 130 and "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    step = torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"]
    assert step > 0 and last == (f"interrupted at step {step} of 1000000: saved {run_dir / 'checkpoint.pt'}; "
                                 f"continue with --resume.")
    assert not (run_dir / launch.LOCK_FILE).exists()
    code, out, err = run(capsys, "train", "gan", "--out", run_dir, "--resume", "--steps", step + 1)
    assert code == 0 and f"resuming gan from step {step} of {step + 1}" in out, err
    # killed (no chance to save): the message after a Ctrl-C outside the loop names the checkpoint kept
    from types import SimpleNamespace

    from gancourse.__main__ import _interrupted
    assert _interrupted(SimpleNamespace(command="train", out=str(run_dir))) == \
        f"interrupted; the checkpoint of step {step + 1} in {str(run_dir)!r} is kept: continue with --resume."


def test_train_help_points_at_the_file_that_defines_train_config(capsys):
    from ganlib import options

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "a field of TrainConfig in ganlib/options.py" in " ".join(capsys.readouterr().out.split())
    assert options.TrainConfig.__module__ == "ganlib.options"


def test_sample_refuses_to_write_samples_that_are_nan(world, capsys, monkeypatch):
    """A generator that outputs NaN (a diverged run) would give all-black images: `sample` names it instead."""
    from ganlib.models import mlp

    def diverged(G, n, *args, **kwargs):
        x = torch.zeros(n, 2)
        x[::4] = float("nan")
        return x, None

    monkeypatch.setattr(mlp.MLPGenerator, "sample", diverged)
    before = snapshot(world)
    code, _, err = run(capsys, "sample", world / "gan", "--num", 8, "--out", world / "s.npz")
    assert code == 2 and err.count("\n") == 1, err
    assert f"2 of the 8 samples hold NaN or infinite values: the generator in {str(world / 'gan')!r} diverged" in err
    assert snapshot(world) == before

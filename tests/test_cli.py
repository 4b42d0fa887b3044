"""The command line, end to end, in the smoke profile."""

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gancourse.__main__ import main
from gancourse.evaluation import evaluate as evaluate_module


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_sample_evaluate_images(tmp_path, capsys):
    run_dir = tmp_path / "dcgan"
    code, out, err = run(capsys, "train", "dcgan", "--data", "digits", "--out", run_dir, "--profile", "smoke",
                         "--steps", 6)
    assert code == 0, err
    assert "training dcgan on digits (1438 samples of 1x16x16)" in out
    assert (run_dir / "checkpoint.pt").is_file() and (run_dir / "config.json").is_file()
    # resume to a later step
    code, out, err = run(capsys, "train", "dcgan", "--out", run_dir, "--profile", "smoke", "--steps", 8, "--resume")
    assert code == 0 and "resuming dcgan from step 6" in out and "step 8" in out
    code, out, err = run(capsys, "sample", run_dir, "--num", 40, "--out", tmp_path / "s.npz", "--seed", 3)
    assert code == 0, err
    with np.load(tmp_path / "s.npz") as f:
        assert f["images"].shape == (40, 16, 16, 1) and f["images"].dtype == np.uint8 and "labels" not in f
    code, out, err = run(capsys, "evaluate", tmp_path / "s.npz", "--data", "digits")
    assert code == 0, err
    assert "real test (40)" in out and "fd" in out and "classes" in out
    for column in ("kid", "precision", "recall", "nn dist", "confidence"):
        assert column in out.splitlines()[1]


def test_train_resume_sample_evaluate_pggan(tmp_path, capsys):
    run_dir = tmp_path / "pggan"
    code, out, err = run(capsys, "train", "pggan", "--data", "shapes", "--out", run_dir, "--profile", "smoke",
                         "--steps", 5)
    assert code == 0, err
    assert "training pggan on shapes (20000 samples of 3x16x16)" in out
    assert "batch by resolution (4x4: 32, 8x8: 16, 16x16: 16)" in out  # the smoke preset's minibatch {4: 32}
    code, out, err = run(capsys, "train", "pggan", "--out", run_dir, "--profile", "smoke", "--resume")
    assert code == 0 and "resuming pggan from step 5 of 5" in out and "nothing to train" in out, err
    code, out, err = run(capsys, "train", "pggan", "--out", run_dir, "--profile", "smoke", "--resume", "--steps", 7)
    assert code == 0 and "resuming pggan from step 5 of 7 with steps 5 -> 7" in out and "done: step 7" in out, err
    code, out, err = run(capsys, "sample", run_dir, "--num", 12, "--out", tmp_path / "s.npz")
    assert code == 0, err
    with np.load(tmp_path / "s.npz") as f:
        assert f["images"].shape == (12, 16, 16, 3)  # the final resolution
    code, out, err = run(capsys, "evaluate", tmp_path / "s.npz", "--data", "shapes")
    assert code == 0 and re.search(r"shape_ok +recognisable\n", out), err  # the judge's columns


def test_train_sample_evaluate_points(tmp_path, capsys):
    run_dir = tmp_path / "gan"
    assert run(capsys, "train", "gan", "--data", "grid25", "--out", run_dir, "--profile", "smoke")[0] == 0
    code, _, err = run(capsys, "sample", run_dir, "--num", 100, "--out", tmp_path / "p.npz")
    assert code == 0, err
    with np.load(tmp_path / "p.npz") as f:
        assert f["points"].shape == (100, 2) and f["points"].dtype == np.float32
    code, out, _ = run(capsys, "evaluate", tmp_path / "p.npz", "--data", "grid25")
    assert code == 0 and "real data" in out
    header, samples, real = out.splitlines()[1:4]
    assert header.split() == ["modes", "hq", "reverse_kl", "fd", "kid", "precision", "recall"]
    assert int(real.split()[2]) >= 22 and float(real.split()[-2]) > 0.9  # 100 real points: most modes, realistic


def test_sample_writes_its_file_atomically(tmp_path, capsys, monkeypatch):
    """`sample` writes through files.atomic_write: the file is fsync'd before it replaces the old one, and a write
    that fails half-way (a full disk) is one line, keeps the samples file already there and leaves no temporary."""
    import errno
    import os

    run_dir, out = tmp_path / "gan", tmp_path / "p.npz"
    assert run(capsys, "train", "gan", "--out", run_dir, "--profile", "smoke")[0] == 0
    assert run(capsys, "sample", run_dir, "--num", 100, "--out", out)[0] == 0
    synced, fsync = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), fsync(fd)))
    assert run(capsys, "sample", run_dir, "--num", 100, "--out", out, "--seed", 1)[0] == 0
    assert synced  # the new file's data, and the folder's entry, reached the disk
    before = out.read_bytes()

    def full_disk(f, **arrays):
        f.write(b"PK\x03\x04 half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez_compressed", full_disk)
    code, _, err = run(capsys, "sample", run_dir, "--num", 100, "--out", out, "--seed", 2)
    assert code == 2 and err.count("\n") == 1, err
    assert f"could not write {str(out)!r} (No space left on device)" in err and "p.npz already there is kept" in err
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gan", "p.npz"]


def test_set_pack_trains_pacgan(tmp_path, capsys):
    """--set pack=2 reaches the discriminator of the gan recipe: it judges pairs (input 2 x 2 coordinates)."""
    from gancourse import recipes

    for pack in (1, 2):
        run_dir = tmp_path / f"pack{pack}"
        code, _, err = run(capsys, "train", "gan", "--out", run_dir, "--profile", "smoke", "--steps", 2,
                           "--set", f"pack={pack}")
        assert code == 0, err
        D = recipes.load_generator(run_dir)[1]["D"]
        assert D["pack"] == pack
    state = torch.load(tmp_path / "pack2" / "checkpoint.pt", weights_only=True)
    assert state["D"]["net.0.weight"].shape[1] == 4  # two 2-D points per row
    # --resume keeps the saved packing without being told again; another packing is refused, naming both
    code, out, err = run(capsys, "train", "gan", "--out", tmp_path / "pack2", "--steps", 4, "--resume")
    assert code == 0 and "resuming gan from step 2" in out, err
    assert recipes.load_generator(tmp_path / "pack2")[1]["D"]["pack"] == 2
    code, _, err = run(capsys, "train", "gan", "--out", tmp_path / "pack2", "--steps", 6, "--resume",
                       "--set", "pack=1")
    assert code != 0 and "D pack 2 vs 1" in err and len(err.strip().splitlines()) == 1


def test_evaluate_catches_a_copying_generator(tmp_path, capsys):
    """Training images replayed as 'samples': the FD of real data, but the nearest training image is at 0."""
    from ganlib import data

    train = data.load("digits", 16)
    replayed = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:300]
    np.savez(tmp_path / "copies.npz", images=train.images[replayed].permute(0, 2, 3, 1).numpy())
    code, out, err = run(capsys, "evaluate", tmp_path / "copies.npz", "--data", "digits")
    assert code == 0, err
    lines = out.splitlines()
    nn_col = lines[1].split().index("nn") + 1  # "nn dist" is two words in the header, one number per row
    copies, real = lines[2].split()[1:], lines[3].split()[3:]  # after "samples" and "real test (300)"
    assert float(copies[nn_col - 1]) == 0.0 and float(real[nn_col - 1]) > 0.5
    assert float(copies[0]) < 1.5 * float(real[0])  # FD: as good as real held-out digits


def test_evaluate_with_inception_offline_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached weights
    np.savez(tmp_path / "s.npz", images=np.zeros((4, 16, 16, 1), np.uint8))
    code, _, err = run(capsys, "evaluate", tmp_path / "s.npz", "--data", "digits", "--features", "inception")
    assert code == 2 and "Inception-v3 weights are not in" in err and err.count("\n") == 1


def test_conditional_sampling_writes_labels(tmp_path, capsys):
    run_dir = tmp_path / "cdcgan"
    code, _, err = run(capsys, "train", "dcgan", "--out", run_dir, "--profile", "smoke", "--steps", 2)
    assert code == 0, err
    code, _, err = run(capsys, "sample", run_dir, "--num", 5, "--out", tmp_path / "x.npz", "--class", 3)
    assert code == 2 and "needs a class-conditional model" in err


@pytest.mark.parametrize("argv,message", [
    (["train", "vae", "--out", "{tmp}/r"], "unknown model 'vae'"),
    (["train", "dcgan", "--data", "mnsit", "--out", "{tmp}/r"], "unknown dataset 'mnsit'"),
    (["train", "dcgan", "--resolution", "24", "--out", "{tmp}/r"], "power of two"),
    (["train", "dcgan", "--out", "{tmp}/r", "--resume"], "there is no checkpoint"),
    (["train", "dcgan", "--out", "{tmp}/r", "--set", "lr=3"], "unknown training option(s) lr"),
    (["train", "gan", "--out", "{tmp}/r", "--set", "pack=0"], "pack=0: the packing degree"),
    (["train", "dcgan", "--out", "{tmp}/r", "--set", "lr_gg=3"], "lr_gg (did you mean lr_g?)"),
    (["train", "dcgan", "--out", "{tmp}/r", "--set", "lr_g=abc"], "lr_g must be a number > 0, e.g. lr_g=0.0002"),
    (["train", "dcgan", "--out", "{tmp}/r", "--set", "lr_g=-1"], "lr_g must be a number > 0"),
    (["train", "dcgan", "--out", "{tmp}/r", "--set", "lr_g=nan"], "lr_g must be a number > 0"),
    (["train", "dcgan", "--out", "{tmp}/r", "--set", "betas=0.5"], "betas must be two numbers in [0, 1)"),
    (["train", "dcgan", "--out", "{tmp}/r", "--set", "log_every=0"], "log_every must be a whole number >= 1"),
    (["train", "dcgan", "--out", "{tmp}/r", "--set", "seed='x'"], "seed must be a whole number >= 0"),
    (["train", "dcgan", "--out", "{tmp}/r", "--steps", "0"], "steps must be a whole number >= 1"),
    (["train", "gan", "--out", "{tmp}/r", "--data", "digits"], "the gan model is for 2-D points (ring8, grid25)"),
    (["train", "dcgan", "--out", "{tmp}/r", "--data", "ring8"], "dcgan needs images, and ring8 holds 2-D points: "
                                                                 "use gan for 2-D data"),
    (["train", "pggan", "--out", "{tmp}/r", "--data", "grid25"], "pggan needs images, and grid25 holds 2-D points"),
    (["train", "dcgan", "--out", "{tmp}/r", "--data", "folder:{tmp}/nowhere"], "does not exist"),
    (["train", "dcgan", "--out", "{tmp}/r", "--data", "mnist"], "downloads are off"),
    (["sample", "{tmp}/r", "--out", "{tmp}/s.npz"], "no checkpoint"),
    (["evaluate", "{tmp}/none.npz", "--data", "digits"], "no samples file"),
    (["grade", "{tmp}/nowhere", "--out", "{tmp}/g.csv"], "is not a folder"),
    (["grade", "{tmp}", "--out", "{tmp}/g.csv", "--chapter", "99"], "no such chapter"),
    (["grade", "{tmp}", "--out", "{tmp}/g.txt"], "must end in .csv"),
])
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, capsys, argv, message):
    code, out, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists() and not (tmp_path / "s.npz").exists()


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    run_dir = tmp_path / "r"
    assert run(capsys, "train", "gan", "--out", run_dir, "--profile", "smoke", "--steps", 2)[0] == 0
    before = (run_dir / "checkpoint.pt").read_bytes()
    code, _, err = run(capsys, "train", "gan", "--out", run_dir, "--profile", "smoke")
    assert code == 2 and "already holds a checkpoint" in err
    assert (run_dir / "checkpoint.pt").read_bytes() == before


def test_corrupt_checkpoint(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "checkpoint.pt").write_bytes(b"\x00" * 100)
    code, _, err = run(capsys, "sample", tmp_path / "r", "--out", tmp_path / "s.npz")
    assert code == 2 and "not a readable ganlib checkpoint" in err
    code, _, err = run(capsys, "train", "dcgan", "--out", tmp_path / "r", "--resume")
    assert code == 2 and "not a readable ganlib checkpoint" in err


def test_resume_with_changed_options(tmp_path, capsys):
    run_dir = tmp_path / "r"
    code, _, err = run(capsys, "train", "dcgan", "--out", run_dir, "--profile", "smoke", "--steps", 2, "--set",
                       "lr_g=3e-4", "--seed", 5)
    assert code == 0, err
    # what is not given again stays as trained (lr_g 3e-4, seed 5); what is given is applied and said
    code, out, err = run(capsys, "train", "dcgan", "--out", run_dir, "--profile", "smoke", "--resume", "--steps", 3,
                         "--set", "lr_d=1e-4")
    assert code == 0 and "resuming dcgan from step 2 of 3 with steps 2 -> 3, lr_d 0.0002 -> 0.0001\n" in out, err
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["opt_d"]["param_groups"][0]["lr"] == 1e-4 and state["opt_g"]["param_groups"][0]["lr"] == 3e-4
    assert state["config"]["seed"] == 5 and state["step"] == 3
    code, _, err = run(capsys, "train", "dcgan", "--out", run_dir, "--profile", "smoke", "--resume", "--seed", 0)
    assert code == 2 and "was trained with seed=5, this run asks for seed=0" in err and err.count("\n") == 1


def test_damaged_checkpoint_names_the_previous_one(tmp_path, capsys):
    run_dir = tmp_path / "r"
    code, _, err = run(capsys, "train", "gan", "--out", run_dir, "--profile", "smoke", "--steps", 4, "--set",
                       "checkpoint_every=2")
    assert code == 0, err
    raw = bytearray((run_dir / "checkpoint.pt").read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 800] = b"\xff" * 800
    (run_dir / "checkpoint.pt").write_bytes(bytes(raw))
    for argv in (["sample", run_dir, "--out", tmp_path / "s.npz"],
                 ["train", "gan", "--out", run_dir, "--profile", "smoke", "--resume", "--steps", 6]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and err.count("\n") == 1, err
        assert "checkpoint.pt' is not a readable ganlib checkpoint" in err
        assert "checkpoint.prev.pt' (step 2) is intact: rename it to checkpoint.pt" in err
    assert not (tmp_path / "s.npz").exists()


def test_unwritable_out_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("in the way")
    code, _, err = run(capsys, "train", "gan", "--out", tmp_path / "file" / "r", "--profile", "smoke")
    assert code == 2 and "cannot write to --out" in err and "(Not a directory)" in err and err.count("\n") == 1


@pytest.mark.skipif(sys.platform == "win32", reason="file-size limits are POSIX")
def test_disk_full_during_a_save_is_one_line_and_keeps_the_checkpoint(tmp_path, capsys):
    """A full disk, simulated by a file-size limit below the checkpoint's size (SIGXFSZ ignored, so a write
    past it fails with EFBIG as on a full disk): one line, and the previous checkpoint intact."""
    import resource
    import signal

    run_dir = tmp_path / "r"
    assert run(capsys, "train", "dcgan", "--out", run_dir, "--profile", "smoke", "--steps", 2)[0] == 0
    before = (run_dir / "checkpoint.pt").read_bytes()
    assert len(before) > 200_000

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    r = subprocess.run([sys.executable, "-m", "gancourse", "train", "dcgan", "--out", str(run_dir), "--profile",
                        "smoke", "--steps", "3", "--resume"], capture_output=True, text=True,
                       preexec_fn=limit)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith(f"error: could not write {str(run_dir / 'checkpoint.pt')!r} (File too large)")
    assert "the checkpoint.pt already there is kept" in err and "Traceback" not in r.stderr
    assert (run_dir / "checkpoint.pt").read_bytes() == before
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "config.json", "history.csv", "samples"]


def test_grade(tmp_path, capsys):
    solution = Path(__file__).resolve().parents[1] / "solutions" / "01_vanilla_gan.ipynb"
    (tmp_path / "subs").mkdir()
    shutil.copy(solution, tmp_path / "subs" / "ada.ipynb")
    code, out, err = run(capsys, "grade", tmp_path / "subs", "--out", tmp_path / "g.csv", "--jobs", 1)
    assert code == 0, err
    assert "grading 1 submission(s) of 01_vanilla_gan" in out and "ada  5/5  ok" in out
    digest = hashlib.sha256(solution.read_bytes()).hexdigest()  # what --resume compares
    assert (tmp_path / "g.csv").read_text().splitlines()[1] == f"ada,1,1,1,1,1,5,5,ok,ada.ipynb,{digest}"
    assert "**5 of 5 points**" in (tmp_path / "g-feedback" / "ada.md").read_text()


def test_help_for_every_command():
    for cmd in ([], ["train"], ["sample"], ["evaluate"], ["bench"], ["make-exercises"], ["grade"]):
        r = subprocess.run([sys.executable, "-m", "gancourse", *cmd, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "usage: python -m gancourse" in r.stdout


def test_evaluate_with_fid_features_offline_is_one_line_naming_the_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached weights
    np.savez(tmp_path / "s.npz", images=np.zeros((4, 16, 16, 1), np.uint8))
    code, _, err = run(capsys, "evaluate", tmp_path / "s.npz", "--data", "digits", "--features", "fid")
    assert code == 2 and "FID Inception weights are not in" in err and err.count("\n") == 1
    assert "weights-inception-2015-12-05" in err  # the file to fetch


def test_evaluate_states_the_papers_protocol_for_fid_features():

    note = evaluate_module._protocol_note("fid", 1000)
    assert "50,000 generated images against every training image" in note and "KID over 100 subsets of 1000" in note
    assert "this file has 1,000 samples" in note and "--num 50000" in note
    assert "follows it" in evaluate_module._protocol_note("fid", 50_000)
    assert "not comparable with papers" in evaluate_module._protocol_note("inception", 1000)
    assert evaluate_module._protocol_note("classifier", 1000) == ""

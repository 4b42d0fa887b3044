"""The benchmark runner's own settings (the benchmarks themselves take minutes: `python -m ganlib bench`)."""

from ganlib import bench
from ganlib.bench import pggan_growing, ring8


def test_benchmarks_run_with_omp_num_threads_when_it_is_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert bench.threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert bench.threads() == 3
    for unusable in ("", "0", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", unusable)
        assert bench.threads() == bench.THREADS
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert bench.threads() == bench.THREADS == 2


def test_ring8_benchmark_trains_what_the_command_line_trains(tmp_path):
    """`bench ring8` measures the preset as `python -m ganlib train gan --seed S --set pack=2` trains it:
    the same weights after training (different steps, rates or initial weights would differ)."""
    import torch

    from ganlib.__main__ import main
    from ganlib.train import load_checkpoint_file

    argv = ["train", "gan", "--profile", "smoke", "--device", "cpu", "--seed", "1", "--set", "pack=2"]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 0
    trainer = ring8.ring8_trainer("smoke", seed=1, pack=2)
    trainer.train(progress=False)
    cli = load_checkpoint_file(tmp_path / "r")
    assert trainer.D.pack == 2 and cli["step"] == trainer.step == trainer.cfg.steps
    for name, weights in trainer.G.state_dict().items():
        assert torch.equal(weights, cli["G"][name]), name


def test_pggan_speedups_from_curves():
    """Time to a quality threshold counts only the final resolution, fully faded in; the per-image ratio
    compares the two runs at the same images."""
    import pytest

    # [train seconds, images, resolution, alpha, shape_ok, recognisable]
    prog = [[10, 1000, 8, 1.0, 0.9, 0], [20, 3000, 16, 0.5, 0.9, 0], [30, 4000, 16, 1.0, 0.6, 0],
            [40, 5000, 16, 1.0, 0.85, 0]]
    fixed = [[30, 2000, 16, 1.0, 0.4, 0], [60, 4000, 16, 1.0, 0.7, 0], [90, 6000, 16, 1.0, 0.82, 0]]
    assert pggan_growing.time_to(prog, 0.8, 16) == 40  # not 10 s (at 8x8) nor 20 s (16x16 still fading in)
    assert pggan_growing.time_to(prog, 0.6, 16) == 30
    assert pggan_growing.time_to(fixed, 0.8, 16) == 90
    assert pggan_growing.time_to(fixed, 0.9, 16) is None
    # 5000 images: the progressive run's last point, 40 s; the fixed run's 75 s, halfway from 60 to 90 s
    assert pggan_growing.per_image_speedup({"progressive": prog, "fixed": fixed}) == pytest.approx(75 / 40)


def test_committed_pggan_figures_follow_from_their_curves():
    """Chapter 02 plots ganlib/results/pggan_growing.json: its speed-ups are those its curves give."""
    import json

    measured = json.loads(pggan_growing.PGGAN_RESULTS.read_text())
    assert measured["races"] and measured["thresholds"] == list(pggan_growing.PGGAN_THRESHOLDS)
    for race in measured["races"]:
        assert pggan_growing.summarise_race(race) == race
        assert race["curves"]["fixed"][0][2] == race["resolution"]  # the fixed run never grows
        assert race["curves"]["progressive"][0][2] == 4  # the progressive one starts at 4x4

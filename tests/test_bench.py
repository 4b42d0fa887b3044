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


def test_pggan_report_renders_from_its_figures_alone(monkeypatch):
    """`report` needs nothing but the measured dict: no preset, no judge, no training."""
    def unreachable(*args, **kwargs):
        raise AssertionError("report must not look beyond the figures it is given")

    monkeypatch.setattr(pggan_growing.recipes, "preset", unreachable)
    monkeypatch.setattr(pggan_growing.metrics, "judge_for", unreachable)
    # [train seconds, images, resolution, alpha, shape_ok, recognisable]
    race16 = {"resolution": 16, "images": 52000, "real_shape_ok": 0.93, "per_image": 1.875,
              "to_threshold": {"0.5": [30, 60], "0.8": [40, None]},
              "curves": {"progressive": [[30, 4000, 16, 1.0, 0.6, 0], [40, 5000, 16, 1.0, 0.85, 0]],
                         "fixed": [[60, 4000, 16, 1.0, 0.7, 0], [95, 6000, 16, 1.0, 0.75, 0]]}}
    race8 = {"resolution": 8, "images": 40000, "real_shape_ok": 0.88, "per_image": 1.1,
             "to_threshold": {"0.5": [50, 45], "0.8": [None, None]},
             "curves": {"progressive": [[50, 4000, 8, 1.0, 0.55, 0]], "fixed": [[45, 4000, 8, 1.0, 0.52, 0]]}}
    measured = {"profile": "cpu", "date": "2026-01-01", "machine": "test", "n_eval": 500, "load_average": [1.5, 2.25],
                "thresholds": [0.5, 0.8], "target": 0.8, "races": [race16, race8],
                "settings": {"growth": {"stable_kimg": 6.0, "fade_kimg": 3.0, "minibatch": {"4": 64, "8": 32}},
                             "batch_size": 16, "lr": 0.003, "betas": [0.0, 0.99]}}
    text = pggan_growing.report(measured)
    rows = [line for line in text.splitlines() if line.startswith("| ")]  # the header, then one row per race
    assert rows[0].startswith("| final resolution |")
    assert rows[1] == "| 8x8 | 40k | 1.10x | 50 / 45 (**0.90x**) | - | 0.55 / 0.52 | 0.88 |"  # smaller first
    assert rows[2] == "| 16x16 | 52k | 1.88x | 30 / 60 (**2.00x**) | 40 / not by 95 (> 2.38x) | 0.85 / 0.75 | 0.93 |"
    flat = " ".join(text.split())  # the prose, without its line breaks
    assert "4x4: 64, 8x8: 32; 16 elsewhere" in flat and "6k images stable, then 3k fading in" in flat
    assert "Adam 0.003" in flat and "load average 1.5 and 2.2" in flat
    assert pggan_growing.speedup(race16, 0.8) == (95 / 40, True) and pggan_growing.speedup(race8, 0.8) == (None, False)

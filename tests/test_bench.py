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


def _spread(mean: float, std: float = 0.0) -> list[float]:
    return [mean, std]


def test_dcgan_digits_report_renders_its_measured_figures():
    """`report` needs nothing but the measured dict: every row's figures, and the ratio computed from them."""
    from ganlib.bench import dcgan_digits

    def row(name, fd, steps, batch=64):
        return dict(name=name, steps=steps, batch=batch, wall=51.0, cpu=40.0, fd=_spread(fd, 1.25),
                    classes=_spread(9.5), confidence=_spread(0.8764))

    ablations = [row(name, 30.0 + i, 4000 + i) for i, (name, *_) in enumerate(dcgan_digits.ABLATIONS)]
    measured = dict(resolution=16, train_images=1438, judge_accuracy=0.983, n=359, draws=5,
                    floor=dict(fd=13.5, classes=10, confidence=0.981), ours=row("ganlib preset", 25.0, 4800),
                    tutorial=row("tutorial-style DCGAN", 100.0, 3000, batch=128), untrained=row("-", 2780.7, 0),
                    ablations=ablations, r1_gamma=0.5, r1_every=4, ema_half_life_kimg=5.0, batch=64, lr=4e-4,
                    tutorial_batch=128, tutorial_lr=2e-4)
    text = dcgan_digits.report(measured)
    assert "| ganlib preset (4800 steps, batch 64) | 51 / 40 | 25.0 ± 1.2 | 9.5 | 0.876 |" in text
    assert "| tutorial-style DCGAN (3000 steps, batch 128) |" in text and "2780.7" in text and "13.5" in text
    for i, (name, *_) in enumerate(dcgan_digits.ABLATIONS):
        assert f"| {name} ({4000 + i} steps, batch 64) | 51 / 40 | {30.0 + i:.1f} ± 1.2 |" in text
    assert "FD ratio: **0.25**" in text  # 25 / 100
    assert "gamma\n0.5, lazily every 4 steps" in text and "0.0004" in text


def test_biggan_tricks_report_renders_its_measured_figures():
    from ganlib.bench import biggan_tricks

    scores = lambda fd, acc: dict(fd=_spread(fd, 0.5), classes=_spread(10.0), label_accuracy=_spread(acc, 0.002),
                                  confidence=_spread(0.95), variety=_spread(0.2))
    rows = [dict(name=f"row {i}", wall=100.0 + i, cpu=50.0 + i, **scores(40.0 - i, 0.9)) for i in range(5)]
    batch_rows = [dict(batch=32, micro=32, accumulate=1, steps=1500, images=48000, wall=9.0, cpu=8.0,
                       fd=_spread(22.5, 1.5), label_accuracy=_spread(0.989, 0.002)),
                  dict(batch=128, micro=32, accumulate=4, steps=375, images=48000, wall=7.0, cpu=6.0,
                       ema_beta=0.9801, ema_start=125, fd=_spread(163.6, 0.4), label_accuracy=_spread(0.456, 0.012))]
    curves = {name: [dict(psi=psi, **scores(fd0 + j, 0.9 + j / 100)) for j, psi in enumerate(biggan_tricks.PSIS)]
              for name, fd0 in (("without", 60.0), ("with", 70.0))}
    sampling = [dict(statistics=how, psi=psi, **scores(200.0 + 10 * i + j, 0.5))
                for i, psi in enumerate(biggan_tricks.STATISTICS_PSIS)
                for j, how in enumerate(biggan_tricks.STATISTICS)]
    measured = dict(resolution=16, width=16, z_dim=60, chunks=3, shared_dim=32, lr_g=2e-4, lr_d=8e-4, batch=32,
                    steps=1500, n=1000, draws=3, judge_accuracy=0.983, rows=rows, batch_rows=batch_rows,
                    real_variety=0.259, ema_beta=0.995, ema_start=500, curves=curves, sampling=sampling,
                    statistics=biggan_tricks.STATISTICS)
    text = biggan_tricks.report(measured)
    assert "| row 3 | 103 / 53 | 37.0 ± 0.5 | 10.0 | 0.900 ± 0.002 |" in text
    assert "| 32 x 4 = 128 | 375 | 48000 | 163.6 ± 0.4 | 0.456 ± 0.012 | 7 / 6 |" in text and "0.9801" in text
    assert "| 0.25 | 0.900 / 0.900 | 0.950 / 0.950 | 60.0 / 70.0 | 0.200 / 0.200 |" in text
    assert "| none | 0.960 / 0.960 | 0.950 / 0.950 | 66.0 / 76.0 |" in text  # the 7th psi: no truncation
    assert "| 0.5 | batch | 222.0 ± 0.5 | 0.500 ± 0.002 | 0.200 |" in text
    assert all(f"**{name}**" in text for name in biggan_tricks.STATISTICS) and "0.259" in text


def test_biggan_tricks_sampling_statistics():
    """Standing and running statistics give each image independently of its batch-mates, batch statistics do
    not; none of the three changes the G it is given."""
    import torch

    from ganlib.bench import biggan_tricks
    from ganlib.models import biggan

    torch.manual_seed(0)
    G = biggan.Generator(16, 1, num_classes=10, z_dim=12, width=8, shared_dim=8)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    labels = torch.arange(20) % 10
    mates = torch.cat([labels[:10], torch.zeros(10, dtype=torch.long)])  # the last 10 images change class
    for how in biggan_tricks.STATISTICS:
        for psi in (None, 0.5):
            x = biggan_tricks.sample_with(G, how, 20, labels, 0, psi)
            x_mates = biggan_tricks.sample_with(G, how, 20, mates, 0, psi)  # the same latents
            assert torch.allclose(x[:10], x_mates[:10], atol=1e-5) == (how != "batch"), (how, psi)
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())

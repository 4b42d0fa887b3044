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


def _stylegan_run(mixing, seed, shape_ok, fd_latents, background_fine):
    """One run's figures as `stylegan_mixing.measure` records them, made by hand."""
    shares = {str(c): {f: {"coarse": 0.5, "fine": background_fine if f == "background" else 0.5}
                       for f in ("shape", "colour", "background", "position")} for c in (2, 4, 6)}
    return {"mixing": mixing, "seed": seed, "steps": 2000, "train_s": 900.0,
            "model": {"w_dim": 64, "mapping_layers": 2, "num_ws": 8, "batch": 64},
            "score": {"shape_ok": shape_ok, "recognisable": 0.2, "classes": 14, "fd": fd_latents[0]},
            "ppl_z": 5e4, "ppl_w": 4e4, "fd_latents": fd_latents, "shares": shares}


def test_stylegan_mixing_report_leaves_diverged_runs_out_of_the_means():
    """The section is rendered from the measured figures alone: per-seed rows, mean ± std over the runs that did
    not diverge (a diverged run is marked and named, not averaged in), and the paired verdict per number of
    latents."""
    from ganlib.bench import stylegan_mixing as sm

    runs = [_stylegan_run(0.9, 0, 0.8, [100.0, 110.0, 120.0, 130.0], 0.9),
            _stylegan_run(0.0, 0, 0.7, [200.0, 300.0, 400.0, 500.0], 0.7),
            _stylegan_run(0.9, 1, 0.9, [120.0, 130.0, 140.0, 150.0], 0.8),
            _stylegan_run(0.0, 1, 0.6, [100.0, 90.0, 80.0, 70.0], 0.6),
            _stylegan_run(0.0, 2, 0.1, [9000.0] * 4, 0.0)]  # diverged: shape_ok below 0.5
    measured = {"n": 1000, "resolution": 32, "judge_accuracy": 0.935, "latents": [1, 2, 3, 4],
                "real": {"shape_ok": 0.99, "recognisable": 0.99, "classes": 18, "fd": 2.4},
                "diverged_below": 0.5, "processes": 2, "planned_seeds": [0, 1, 2, 3],
                "preset_steps": 2000, "runs": runs}
    text = sm.report(measured)
    assert "Diverged: without mixing regularisation, seed 2" in text
    assert "| without mixing regularisation (diverged) | 2 | 9000.0 | 9000.0 | 9000.0 | 9000.0 |" in text
    # means over seeds 0 and 1 (sample std: |a - b| / sqrt(2)); the diverged run's 9000 stays out
    assert "| **with mixing regularisation, mean ± std** | 2 seeds | 110.0 ± 14.1 | 120.0 ± 14.1 |" in text
    assert "| **without mixing regularisation, mean ± std** | 2 seeds | 150.0 ± 70.7 | 195.0 ± 148.5 |" in text
    # rise over 1 latent at 4 latents: with (30 + 30) / 2 = +30, without (300 - 30) / 2 = +135; lower with it
    # in seed 0 (130 < 500) but not in seed 1 (150 > 70)
    assert "- 4 latents: FD +30.0 over 1 latent with mixing regularisation, +135.0 without (means); FD lower with " \
           "it in 1 of 2 seeds" in text
    assert "| without mixing regularisation | 2 | 0.50 ± 0.00 / 0.50 ± 0.00 | 0.50 ± 0.00 / 0.50 ± 0.00 | " \
           "0.50 ± 0.00 / 0.65 ± 0.07 |" in text
    assert "batch 64, 2000 steps)" in text
    runs[0]["steps"] = 1500  # a run reported from the checkpoint a stopped benchmark left
    assert "batch 64, **stopped at step 1500 of the preset's 2000**)" in sm.report(measured)
    assert "seeds\n0, 1, 2 (of the planned 0, 1, 2, 3: the runs of seed 3 did not finish" in text


def test_mix_latents_gives_each_latent_a_run_of_rows():
    """k latents at k - 1 distinct random crossovers: rows read latents 0, 1, ..., k-1 in order, each at least
    once, and the crossovers differ between samples."""
    import torch

    from ganlib.bench.stylegan_mixing import mix_latents

    k, n, num_ws = 4, 200, 8
    ws = torch.arange(k, dtype=torch.float32)[:, None, None, None].expand(k, n, num_ws, 3)  # latent i is all i
    mixed = mix_latents(ws, torch.Generator().manual_seed(0))
    source = mixed[:, :, 0]  # [n, num_ws]: which latent each row read
    assert mixed.shape == (n, num_ws, 3) and torch.equal(mixed, mixed[:, :, :1].expand_as(mixed))
    assert (source[:, 0] == 0).all() and (source[:, -1] == k - 1).all()
    steps = source.diff(dim=1)
    assert ((steps == 0) | (steps == 1)).all() and (steps.sum(dim=1) == k - 1).all()
    assert len({tuple(row.tolist()) for row in source}) > 20  # per-sample crossovers, not one for the batch
    assert torch.equal(mix_latents(ws[:1]), ws[0])

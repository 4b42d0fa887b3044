"""The benchmark runner's own settings (the benchmarks themselves take minutes: `python -m gancourse bench`)."""

import time
from pathlib import Path

from gancourse import bench, results
from gancourse.bench import pggan_costs, pggan_growing, ring8


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
    """`bench ring8` measures the preset as `python -m gancourse train gan --seed S --set pack=2` trains it:
    the same weights after training (different steps, rates or initial weights would differ)."""
    import torch

    from gancourse.__main__ import main
    from ganlib.checkpoints import load_checkpoint_file

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
    """Chapter 02 plots gancourse/results/pggan_growing.json, where the benchmark writes it: its speed-ups are
    those its curves give."""
    assert pggan_growing.PGGAN_RESULTS == results.path("pggan_growing")
    measured = results.load("pggan_growing")
    assert measured["races"] and measured["thresholds"] == list(pggan_growing.PGGAN_THRESHOLDS)
    for race in measured["races"]:
        assert pggan_growing.summarise_race(race) == race
        assert race["curves"]["fixed"][0][2] == race["resolution"]  # the fixed run never grows
        assert race["curves"]["progressive"][0][2] == 4  # the progressive one starts at 4x4


def test_results_of_a_benchmark_never_run_name_the_command_that_measures_them():
    import pytest

    from ganlib.errors import GanlibError

    with pytest.raises(GanlibError, match="measure them with `python -m gancourse bench no-such-bench`"):
        results.load("no_such_bench")


def test_pggan_costs_measure_quick_and_report():
    """Every resolution from 4x4 to the final one is timed for both networks; the constant-width ones have one
    width, the preset's halve with each doubling; the cost column is seconds per image relative to the final."""
    measured = pggan_costs.measure(quick=True)  # the smoke preset: 4x4 to 16x16
    rows = measured["rows"]
    assert [row["resolution"] for row in rows] == [4, 8, 16] and [row["minibatch"] for row in rows] == [32, 16, 16]
    assert {row["constant"]["channels"] for row in rows} == {pggan_costs.CONSTANT_WIDTH}
    assert [row["preset"]["channels"] for row in rows] == [16, 16, 8]  # min(64 / 2^stage, 16)
    assert all(row[n]["images_per_s"] > 0 for row in rows for n in ("preset", "constant"))
    rows[0]["preset"]["images_per_s"], rows[-1]["preset"]["images_per_s"] = 400.0, 100.0  # made-up figures
    lines = [line for line in pggan_costs.report(measured).splitlines() if line.startswith("| ")]
    assert lines[1].startswith("| 4x4 | 32 | 16 | 400 | 0.25 | 16 |")
    assert lines[3].startswith("| 16x16 | 16 | 8 | 100 | 1.00 | 16 |")


def test_pggan_report_renders_from_its_figures_alone(monkeypatch):
    """`report` needs nothing but the measured dict: no preset, no judge, no training."""
    def unreachable(*args, **kwargs):
        raise AssertionError("report must not look beyond the figures it is given")

    monkeypatch.setattr(pggan_growing.recipes, "preset", unreachable)
    monkeypatch.setattr(pggan_growing.evaluation, "judge_for", unreachable)
    # [train seconds, images, resolution, alpha, shape_ok, recognisable]
    race16 = {"resolution": 16, "images": 52000, "real_shape_ok": 0.93, "per_image": 1.875,
              "to_threshold": {"0.5": [30, 60], "0.8": [40, None]},
              "curves": {"progressive": [[30, 4000, 16, 1.0, 0.6, 0], [40, 5000, 16, 1.0, 0.85, 0]],
                         "fixed": [[60, 4000, 16, 1.0, 0.7, 0], [95, 6000, 16, 1.0, 0.75, 0]]}}
    race8 = {"resolution": 8, "images": 40000, "real_shape_ok": 0.88, "per_image": 1.1,
             "to_threshold": {"0.5": [50, 45], "0.8": [None, None]},
             "curves": {"progressive": [[50, 4000, 8, 1.0, 0.55, 0]], "fixed": [[45, 4000, 8, 1.0, 0.52, 0]]}}
    measured = {"profile": "cpu", "date": "2026-01-01", "machine": "test", "n_eval": 500, "load_average": [1.5, 2.25],
                "processes": 2, "thresholds": [0.5, 0.8], "target": 0.8, "races": [race16, race8],
                "settings": {"growth": {"stable_kimg": 6.0, "fade_kimg": 3.0, "minibatch": {"4": 64, "8": 32}},
                             "batch_size": 16, "lr": 0.003, "betas": [0.0, 0.99],
                             "G": {"z_dim": 128, "fmap_base": 128, "fmap_max": 64}, "D": {"fmap_base": 128}}}
    text = pggan_growing.report(measured)
    rows = [line for line in text.splitlines() if line.startswith("| ")]  # the header, then one row per race
    assert rows[0].startswith("| final resolution |")
    assert rows[1] == "| 8x8 | 40k | 1.10x | 50 / 45 (**0.90x**) | - | 0.55 / 0.52 | 0.88 |"  # smaller first
    assert rows[2] == "| 16x16 | 52k | 1.88x | 30 / 60 (**2.00x**) | 40 / not by 95 (> 2.38x) | 0.85 / 0.75 | 0.93 |"
    flat = " ".join(text.split())  # the prose, without its line breaks
    assert "4x4: 64, 8x8: 32; 16 elsewhere" in flat and "6k images stable, then 3k fading in" in flat
    assert "Adam 0.003" in flat and "load average 1.5 and 2.2" in flat and "fmap_base 128, fmap_max 64" in flat
    assert "2 resolutions at a time" in flat
    assert results.speedup(race16, 0.8) == (95 / 40, True) and results.speedup(race8, 0.8) == (None, False)


def test_runner_calls_report_of_measure_and_gives_the_grading_benchmark_the_course_notebooks(monkeypatch, tmp_path):
    """`main` writes each section as `## TITLE`, the command, then `report(measure(quick))`; a benchmark named
    in `NOTEBOOKS` gets the course's solution and exercise notebooks of its chapter."""
    import types

    calls = []

    def fake(name: str, title: str) -> types.ModuleType:
        module = types.ModuleType(name)
        module.TITLE = title
        module.measure = lambda quick, **notebooks: calls.append((name, quick, notebooks)) or {"figure": 41.5}
        module.report = lambda measured: f"{name} measured {measured['figure']:.1f}"
        return module

    monkeypatch.setattr(bench, "BENCHMARKS", {"ring8": fake("ring8", "Ring"), "grading": fake("grading", "Class")})
    out = tmp_path / "b.md"
    bench.main(["ring8", "grading"], out=out, quick=True)
    text = out.read_text()
    assert "<!-- bench:ring8 -->\n## Ring\n\nCommand: `" in text and "python -m gancourse bench --quick ring8`" in text
    assert "ring8 measured 41.5\n<!-- /bench:ring8 -->" in text and "grading measured 41.5" in text
    assert [(n, q) for n, q, _ in calls] == [("ring8", True), ("grading", True)] and calls[0][2] == {}
    notebooks = calls[1][2]
    assert sorted(notebooks) == ["exercise", "solution"]
    assert notebooks["solution"].parts[-2:] == ("solutions", "01_vanilla_gan.ipynb") and notebooks["solution"].is_file()
    assert notebooks["exercise"].parts[-2:] == ("exercises", "01_vanilla_gan.ipynb") and notebooks["exercise"].is_file()


def test_every_registered_benchmark_is_a_module_with_the_interface():
    assert len(bench.BENCHMARKS) >= 9
    for name, module in bench.BENCHMARKS.items():
        assert isinstance(module.TITLE, str) and callable(module.measure) and callable(module.report), name


def test_ring8_report_from_its_figures():
    runs = [{"pack": pack, "seed": seed, "modes": modes, "hq": hq, "reverse_kl": kl, "seconds": 30 + seed}
            for pack, (modes, hq, kl) in ((1, (3, 0.5, 0.9)), (2, (7, 0.875, float("nan")))) for seed in range(3)]
    text = ring8.report({"profile": "cpu", "threads": 2, "G": {"z_dim": 2, "depth": 3, "hidden": 64},
                         "D": {"depth": 2, "hidden": 32}, "train": {"betas": [0.5, 0.999], "lr_g": 1e-3, "lr_d": 2e-3,
                                                                    "batch_size": 128, "steps": 4000,
                                                                    "lr_decay_start": 0.5}, "runs": runs})
    assert "| vanilla GAN | 2 | 3 | 50.0 | 0.90 | 32 |" in text and "| PacGAN2 | 0 | 7 | 87.5 | - | 30 |" in text
    assert "vanilla GAN 3.0 modes, 50.0 % HQ" in text and "**7.0 modes, 87.5 % HQ**" in text
    assert "G (z 2, 3x64 ReLU) and D (2x32 LeakyReLU)" in text and "betas (0.5, 0.999)" in text
    assert "batch\n128, 4000 steps" in text and "after 50 %" in text and "2 at a time" in text


def test_throughput_report_from_its_figures():
    from gancourse.bench import throughput

    seconds = {"ganlib": [1.0, 1.0], "fresh": [0.8, 1.2], "tutorial": [0.5, 0.5]}
    text = throughput.report({"resolution": 16, "batch": 64, "chunk": 25, "rounds": 2, "seconds": seconds})
    # images/s: 25 * 2 * 64 / 2 s = 1600 for ganlib and fresh, 3200 for the tutorial's loop
    assert "| 1600 | |" in text and "| 1600 | **1.00** |" in text and "| 3200 | 0.50 |" in text
    assert "per-round ratios: median 1.00, range 0.80 to 1.20" in text  # fresh / ganlib per round
    assert "digits 16x16, batch 64" in text and "25 steps at a time, for 2 rounds" in text


def test_ddp_throughput_report_from_its_figures():
    from gancourse.bench import ddp_throughput

    setups = [{"name": "1 process", "processes": 1, "accumulate": 1, "runs": [100.0, 120.0]},
              {"name": "2 processes (torchrun, gloo)", "processes": 2, "accumulate": 1, "runs": [180.0, 200.0]},
              {"name": "1 process, --accumulate 2", "processes": 1, "accumulate": 2, "runs": [105.0, 115.0]}]
    text = ddp_throughput.report({"steps": 300, "repeats": 2, "load_before": 1.25, "load_after": 3.0, "batch": 64,
                                  "setups": setups})
    assert "| 1 process | 64 | 64 | 110 | 1.00 | 100, 120 |" in text
    assert "| 2 processes (torchrun, gloo) | 64 | 128 | 190 | 1.73 | 180, 200 |" in text
    assert "| 1 process, --accumulate 2 | 64 | 128 | 110 | 1.00 |" in text
    assert "**1.73x**" in text and "load average was 1.2 before and\n3.0 after" in text and "--steps 300" in text
    assert "1.00x the images per second of one: it saves memory, not time." in " ".join(text.split())
    setups[2]["runs"] = [130.0, 130.0]  # accumulating is 1.18x one process, and 190 / 130 = 1.46x slower than two
    text = " ".join(ddp_throughput.report({"steps": 300, "repeats": 2, "load_before": 1.25, "load_after": 3.0,
                                           "batch": 64, "setups": setups}).split())
    assert "1.18x the images per second of one: faster per image" in text and "1.46x slower than two processes" in text


def test_grading_report_from_its_figures():
    from gancourse.bench import grading_class

    def kind(name, count, seconds, points, status):
        return {"kind": name, "count": count, "seconds": [seconds] * count, "points": points, "out_of": 4,
                "status": status}

    ordinary = [kind("solution", 12, 0.25, 4, "ok"), kind(grading_class.LOOP_KIND, 2, 15.0, 0, "timeout")]
    attacked = [*ordinary, kind("attack: forges a results file, then exits", 1, 0.5, 0, "crashed")]
    attacked[0] = kind("solution", 12, 0.4, 4, "ok")
    text = grading_class.report({"jobs": 2, "timeout": 60.0, "fresh": [2.0, 3.0, 2.5], "same_marks": False,
                                 "load": (1.25, 3.0),
                                 "class": {"wall": 22.14, "confinement": "no namespaces", "kinds": ordinary},
                                 "attacked": {"wall": 25.0, "confinement": "no namespaces", "kinds": attacked}})
    assert "a class of 14 chapter 01 notebooks, `--jobs 2`" in text and "`--timeout 60`" in text
    assert "| solution | 12 | 0.25 | 4 of 4 | ok |" in text and "| 2 | 15.00 | 0 of 4 | timeout |" in text
    assert "**22.1 s**" in text and "The 12 submissions without a loop took 3.0 s in all" in text
    assert "takes 2.5 s (median of\n3): 14 of them would cost 35 s" in text and "Confinement:\nno namespaces." in text
    assert "with 1 hostile submissions added" in text and "**25.0 s**" in text and "NOT the same as above" in text
    assert "| attack: forges a results file, then exits | 1 | 0.50 | 0 of 4 | crashed |" in text
    assert "0.25 s without the attacks\nand 0.40 s with them (median): **1.60x**" in text
    assert "load average was\n1.2 before and 3.0 after" in text


def test_grading_benchmark_builds_its_wrong_submissions_by_redefining_functions():
    """The class's wrong answers are the course's notebooks with a cell appended that redefines one function;
    the grader's extraction then sees the wrong function and keeps the notebook's others."""
    import json
    import time

    import torch

    from gancourse import grading
    from gancourse.bench import grading_class

    notebooks = grading.course_notebooks("01_vanilla_gan")

    def extracted(text: str):
        module, notes, _ = grading._define(grading.notebook_code(json.loads(text)),
                                           ["generator_loss", "discriminator_loss"], time.time() + 30, 1)
        return module, notes

    logits = torch.tensor([-1.0, 0.5, 2.0])
    right = torch.nn.functional.softplus(-logits).mean()
    wrong, notes = extracted(grading_class._with_cell(notebooks["solution"], grading_class.WRONG_SIGN))
    assert not notes and torch.allclose(wrong.generator_loss(logits), -right)
    solution, _ = extracted(notebooks["solution"].read_text())
    assert torch.allclose(solution.generator_loss(logits), right)
    assert torch.equal(wrong.discriminator_loss(logits, logits), solution.discriminator_loss(logits, logits))
    looping_text = grading_class._with_cell(notebooks["exercise"], grading_class.ENDLESS)
    looping, _ = extracted(looping_text)
    last_cell = grading.notebook_code(json.loads(looping_text))[-1][0]
    assert looping.discriminator_loss.__code__.co_filename == f"<cell {last_cell}>"  # the loop, not the stub
    assert "while True" in grading_class.ENDLESS


def _spread(mean: float, std: float = 0.0) -> list[float]:
    return [mean, std]


def test_dcgan_digits_report_renders_its_measured_figures():
    """`report` needs nothing but the measured dict: every row's figures, and the ratio computed from them."""
    from gancourse.bench import dcgan_digits

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
    from gancourse.bench import biggan_tricks

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
    from gancourse.bench import stylegan_mixing as sm

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

    from gancourse.bench.stylegan_mixing import mix_latents

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


def test_threads_benchmark_times_each_family_thread_count_and_load():
    """`step_rates` trains each family's preset with each thread count under each load in turn."""
    import torch

    from gancourse.bench import cpu_threads

    before = torch.get_num_threads()
    try:
        rates = cpu_threads.step_rates(["gan", "dcgan"], [1, 2], [0, 1], 0.05, 1, profile="smoke")
        assert sorted(rates) == ["0", "1"] and all(sorted(r) == ["dcgan", "gan"] for r in rates.values())
        assert all(sorted(by_n) == ["1", "2"] and min(by_n.values()) > 0 for r in rates.values() for by_n in r.values())
    finally:
        torch.set_num_threads(before)


def test_competing_busy_processes_run_for_the_block_only():
    import psutil

    from gancourse.bench import cpu_threads

    def busy() -> int:
        return sum(1 for p in psutil.Process().children() if p.status() != psutil.STATUS_ZOMBIE
                   and cpu_threads.BUSY in " ".join(p.cmdline()))

    with cpu_threads.competing(3, settle=0.1) as processes:
        assert busy() == 3 and all(p.poll() is None for p in processes)
        cpu = [psutil.Process(p.pid).cpu_times().user for p in processes]
    assert busy() == 0 and all(p.poll() is not None for p in processes) and max(cpu) > 0


def test_threads_report_shows_quiet_rates_and_slow_downs_and_judges_the_default():
    from gancourse.bench import cpu_threads

    def rates(load: int) -> dict:  # gan: 2 threads halve with each busy process; dcgan: x1.5 with one
        return {"gan": {"1": 100.0, "2": 50.0 / (1 + load)}, "dcgan": {"1": 4.0, "2": 6.0 / (1 + 0.5 * load)}}

    measured = {"profile": "cpu", "seconds": 1.5, "rounds": 2, "cpus": 2, "families": ["gan", "dcgan"],
                "defaults": {"gan": 1, "dcgan": 2}, "loadavg": [2.0, 4.0],
                "cells": {w: {str(load): rates(load) for load in (0, 1, 3)} for w in cpu_threads.WAITS}}
    text = cpu_threads.report(measured)
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows[0] == "| `gan` | passive, 1 | 100.0/s; x1.0, x1.0 | 50.0/s; x2.0, x4.0 | **100.0/s; x1.0, x1.0** | " \
                      "50.0/s; x2.0, x4.0 |"
    assert rows[1].endswith("| 4.0/s; x1.0, x1.0 | **6.0/s; x1.5, x2.5** |")
    assert "at most x1.5 (2 of 2 families within the target of x2)" in text and "2.0 and 4.0 before and after" in text


def _notebook(path, *cells: str):
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(notebook, path)
    return path


def test_chapters_benchmark_records_time_memory_and_what_a_notebook_raised(tmp_path):
    """A notebook that holds 2 x 200 MiB, computes for a second of CPU and then raises: its figures are the
    kernel's; a cell past the time limit stops it."""
    from gancourse.bench import chapters

    path = _notebook(tmp_path / "n.ipynb", "import time\nblock = bytes(bytearray(200 * 2**20))\n"
                     "t = time.process_time()\nwhile time.process_time() - t < 1.0:\n    pass",
                     "raise ValueError('the third cell is never run')", "print('never')")
    r = chapters.run_notebook(path, "smoke", timeout=120)
    assert r["error"] == "CellExecutionError: ValueError: the third cell is never run"
    assert r["peak_bytes"] >= 400 * 2**20 and r["cpu_s"] >= 1.0 and r["wall_s"] >= 1.0
    r = chapters.run_notebook(_notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(60)"), "smoke", timeout=3)
    assert r["error"].startswith("CellTimeoutError") and r["wall_s"] < 60


def test_chapters_report_and_the_lectures_it_runs():
    from gancourse.bench import chapters

    lectures = chapters.chapters(Path(bench.__file__).parents[2] / bench.FOLDERS["chapters"])
    assert lectures[:2] == ["01_vanilla_gan", "01b_wgan_conditional"] and len(lectures) >= 7
    measured = {"profile": "cpu", "time_limit_s": 3600, "processes": 2, "not_run": ["02_pggan"],
                "chapters": {"01_vanilla_gan": {"wall_s": 540.0, "cpu_s": 810.0, "peak_bytes": 1.5 * 2**30,
                                                "error": None, "load_before": 1.25},
                             "03_stylegan": {"wall_s": 3600.0, "cpu_s": None, "peak_bytes": None,
                                             "error": "stopped after 3600 s", "load_before": None}}}
    rows = [line for line in chapters.report(measured).splitlines() if line.startswith("| 0")]
    assert rows == ["| 01_vanilla_gan | 9.0 min | 13.5 min | 1.50 | 1.50 GiB | no | 1.2 |",
                    "| 03_stylegan | 60.0 min | - | - | - | stopped after 3600 s | - |"]
    assert "Not run in this measurement: 02_pggan." in chapters.report(measured)


def test_chapters_benchmark_runs_every_lecture_in_the_cpu_profile(monkeypatch):
    from gancourse.bench import chapters

    ran = []
    monkeypatch.setattr(chapters, "run_notebook", lambda path, profile, timeout: ran.append((path, profile)) or
                        {"wall_s": 1.0, "cpu_s": 1.0, "peak_bytes": 1, "error": None})
    measured = bench.measure("chapters")
    lectures = sorted((Path(bench.__file__).parents[2] / "notebooks").glob("*.ipynb"))
    assert ran == [(path, "cpu") for path in lectures] and measured["not_run"] == []
    assert list(measured["chapters"]) == [path.stem for path in lectures]


def test_each_lecture_states_at_its_top_the_run_time_its_benchmark_measured():
    """The line under each lecture's title is `run_time_line` of the chapters table in docs/benchmarks.md (one
    place for a chapter's run time: no notebook times itself)."""
    import nbformat

    from gancourse.bench import chapters

    root = Path(bench.__file__).parents[2]
    minutes = chapters.measured_minutes((root / "docs" / "benchmarks.md").read_text())
    assert minutes, "the chapters table has no chapter that ran without an error"
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        assert cells[0].source.endswith("\n\n" + chapters.run_time_line(minutes.get(path.stem))), path.name
        assert not any("time.time()" in cell.source for cell in cells), path.name
    assert chapters.run_time_line(6.6).startswith("*Run time (`cpu` profile): about 7 minutes on a 2-core machine")


def test_a_notebook_past_its_time_limit_is_stopped_with_its_kernel(tmp_path, monkeypatch):
    """Cells each within the limit, the notebook past it: its process and its kernel (which runs in a session of
    its own) are killed."""
    import psutil

    from gancourse.bench import chapters

    monkeypatch.setattr(chapters, "GRACE", 0)
    def kernels() -> set[int]:
        return {p.pid for p in psutil.process_iter(["cmdline", "status"]) if p.info["status"] != psutil.STATUS_ZOMBIE
                and "ipykernel" in " ".join(p.info["cmdline"] or [])}

    before = kernels()
    path = _notebook(tmp_path / "long.ipynb", *["import time\ntime.sleep(4)"] * 4)
    r = chapters.run_notebook(path, "smoke", timeout=6)
    assert r["error"] == "stopped after 6 s" and r["wall_s"] < 12
    time.sleep(0.5)
    assert not kernels() - before

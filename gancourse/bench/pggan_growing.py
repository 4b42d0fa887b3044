"""PGGAN: progressive growing against training at the final resolution from the start.

`measure` races the two runs at several final resolutions and returns every figure of the section (it also
writes them to `PGGAN_RESULTS`, what chapter 02 plots, after each resolution); `report` writes the section
from those figures alone.
"""

from __future__ import annotations

import datetime
import json
import os
import sys

import torch

from ganlib.env import default_device
from ganlib.files import atomic_write_text
from ganlib.progressive import GrowthSchedule

from .. import evaluation, recipes, results
from ..recipes.pggan import budget_images
from ..results import speedup
from .core import machine

TITLE = "PGGAN on shapes: progressive growing against the full resolution from the start"
PGGAN_THRESHOLDS = (0.5, 0.6, 0.7, 0.8)  # shape_ok levels whose first crossing at the final resolution is timed
PGGAN_TARGET = 0.8  # the headline's "equal quality": about where the fixed run ends the chapter's budget
PGGAN_RESULTS = results.path("pggan_growing")  # what chapter 02 plots
RUNS = ("progressive", "fixed")
PROCESSES = 2  # resolutions raced at a time, each in a process of one thread


def pggan_race(profile: str, device: str, resolution: int, turn_images: int, n_eval: int,
               budget: float = 1.5) -> dict:
    """Progressive growing against training at `resolution` from the start, in turns of `turn_images` images
    each (so that changes in machine load hit both alike), with the judge's figures after every turn (not
    counted as training time). A run stops once its shape_ok reaches the highest threshold at the final
    resolution, or after `budget` times the preset's image budget scaled to `resolution`. Returns each run's
    curve of [train seconds, images, resolution, alpha, shape_ok, recognisable]."""
    preset = recipes.preset("pggan", profile)
    images = round(budget * budget_images(preset, resolution))
    batch = preset["train"]["batch_size"]
    judge = evaluation.judge_for("shapes", resolution)
    runs = {}
    for name, start in zip(RUNS, (preset["trainer"]["growth"].get("start_resolution", 4), resolution)):
        torch.manual_seed(0)
        growth = dict(preset["trainer"]["growth"], start_resolution=start)
        steps = GrowthSchedule(resolution, **growth).steps_until(images, batch)
        runs[name] = recipes.make_trainer("pggan", profile=profile, device=device, resolution=resolution,
                                          steps=steps, preset_overrides={"trainer": {"growth": growth}})
    curves = {name: [] for name in runs}
    active, turn = list(runs), 0
    while active:
        turn += 1
        for name in list(active):
            t = runs[name]
            t.train(min(t.schedule.steps_until(turn * turn_images, batch), t.cfg.steps), progress=False)
            m = judge.score(t.sample(n_eval, seed=1)[0])
            curves[name].append([round(t.elapsed, 2), t.images_seen, t.resolution, round(t.alpha, 3),
                                 round(m["shape_ok"], 4), round(m["recognisable"], 4)])
            at_final = t.resolution == resolution and t.alpha == 1.0
            if t.step >= t.cfg.steps or (at_final and m["shape_ok"] >= max(PGGAN_THRESHOLDS)):
                active.remove(name)
    real = judge.real_score(n_eval, resolution)["shape_ok"]
    return {"resolution": resolution, "images": images, "real_shape_ok": round(real, 4), "curves": curves}


def time_to(curve: list, threshold: float, resolution: int) -> float | None:
    """Training seconds until shape_ok first reaches `threshold` at the final resolution (None: never)."""
    return next((c[0] for c in curve if c[2] == resolution and c[3] == 1.0 and c[4] >= threshold), None)


def per_image_speedup(curves: dict) -> float:
    """The fixed run's training seconds over the progressive run's for the same number of images (the smaller
    of the two runs' totals), each read off its curve by linear interpolation."""
    import numpy as np

    images = min(curves["progressive"][-1][1], curves["fixed"][-1][1])
    seconds = {name: np.interp(images, [0] + [c[1] for c in curve], [0.0] + [c[0] for c in curve])
               for name, curve in curves.items()}
    return float(seconds["fixed"] / seconds["progressive"])


def summarise_race(race: dict) -> dict:
    """A `pggan_race` result with its per-image speed-up and, per threshold, the two runs' seconds to it."""
    res, curves = race["resolution"], race["curves"]
    return dict(race, per_image=round(per_image_speedup(curves), 3),
                to_threshold={str(th): [time_to(curves[n], th, res) for n in RUNS] for th in PGGAN_THRESHOLDS})


def _race(profile: str, device: str, resolution: int, budget: int, n_eval: int) -> dict:
    """One resolution's race with its summary, in a process of one thread (spawned by `measure`)."""
    torch.set_num_threads(1)
    return summarise_race(pggan_race(profile, device, resolution, turn_images=max(1, budget // 40), n_eval=n_eval))


def measure(quick: bool = False) -> dict:
    """Race the two runs at a quarter, a half and all of the preset's final resolution (from 8x8 up), each
    resolution in a process of one thread, `PROCESSES` at a time: the final resolution, the longest race,
    starts first. The figures are written to `PGGAN_RESULTS` as each resolution ends, so that a stopped
    benchmark keeps what it measured."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    profile = "smoke" if quick else ("gpu" if torch.cuda.is_available() else "cpu")
    device = default_device()
    preset = recipes.preset("pggan", profile)
    final, budget = preset["resolution"], budget_images(preset, preset["resolution"])
    train, growth = preset["train"], dict(preset["trainer"]["growth"])
    growth["minibatch"] = {str(r): b for r, b in growth.get("minibatch", {}).items()}  # as JSON keeps it
    measured = {"profile": profile, "date": datetime.date.today().isoformat(), "machine": machine(),
                "n_eval": 100 if quick else 500, "load_average": [round(os.getloadavg()[0], 2)],
                "processes": PROCESSES, "thresholds": list(PGGAN_THRESHOLDS), "target": PGGAN_TARGET,
                "settings": {"growth": growth, "batch_size": train["batch_size"], "lr": train["lr_g"],
                             "betas": list(train["betas"]), "G": preset["G"], "D": preset["D"]},
                "races": []}
    resolutions = [r for r in (final, final // 2, final // 4) if r >= 8]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(PROCESSES, len(resolutions)), mp_context=context) as pool:
        races = [pool.submit(_race, profile, device, r, budget, measured["n_eval"]) for r in resolutions]
        for done in as_completed(races):
            measured["races"].append(done.result())
            measured["load_average"] = measured["load_average"][:1] + [round(os.getloadavg()[0], 2)]
            print(f"pggan-growing: {measured['races'][-1]['resolution']}x{measured['races'][-1]['resolution']} "
                  f"done", file=sys.stderr, flush=True)
            if not quick:
                PGGAN_RESULTS.parent.mkdir(exist_ok=True)
                atomic_write_text(json.dumps(measured, indent=1) + "\n", PGGAN_RESULTS)
    measured["races"].sort(key=lambda race: race["resolution"])
    return measured


def _cell(race: dict, threshold: float) -> str:
    ratio, bound = speedup(race, threshold)
    progressive, fixed = race["to_threshold"][str(threshold)]
    if ratio is None:
        return "-"
    if bound:
        return f"{progressive:.0f} / not by {race['curves']['fixed'][-1][0]:.0f} (> {ratio:.2f}x)"
    return f"{progressive:.0f} / {fixed:.0f} (**{ratio:.2f}x**)"


def report(measured: dict) -> str:
    """The section's markdown, from `measure`'s figures alone."""
    thresholds, n_eval, settings = measured["thresholds"], measured["n_eval"], measured["settings"]
    growth = settings["growth"]
    rows = []
    for race in sorted(measured["races"], key=lambda race: race["resolution"]):
        res, curves = race["resolution"], race["curves"]
        ends = " / ".join(f"{curves[n][-1][4]:.2f}" for n in RUNS)
        rows.append(f"| {res}x{res} | {race['images'] / 1000:g}k | {race['per_image']:.2f}x | "
                    f"{' | '.join(_cell(race, th) for th in thresholds)} | {ends} | {race['real_shape_ok']:.2f} |")
    minibatch = ", ".join(f"{r}x{r}: {b}" for r, b in growth.get("minibatch", {}).items())
    load = " and ".join(f"{x:.1f}" for x in measured["load_average"])
    header = " | ".join(f"shape_ok >= {th}" for th in thresholds)
    G = settings["G"]
    return f"""The `pggan` recipe's `{measured['profile']}` preset on `shapes`, grown to each final resolution in the
table: the same networks (fmap_base {G['fmap_base']}, fmap_max {G['fmap_max']} in G and D, z_dim {G['z_dim']}), loss
(WGAN-GP, lambda 10, drift 0.001) and optimiser (Adam {settings['lr']:g}, betas
{tuple(settings['betas'])}) for both runs, and the same minibatch at each resolution ({minibatch or 'none listed'};
{settings['batch_size']} elsewhere); the progressive one grows from 4x4 ({growth['stable_kimg']:g}k images stable,
then {growth['fade_kimg']:g}k fading in, per doubling), the fixed one trains at the final resolution from the first
step. The two runs of a resolution train in turns of a fortieth of the preset's image budget in one process of
one thread (so that changes in machine load hit both alike; {measured['processes']} resolutions at a time), each
until its shape_ok (the share of samples whose shape class the shapes judge recognises, on {n_eval} samples of
the EMA generator after each turn) reaches {max(thresholds)} at the final resolution, or until the image budget in
the table. Training seconds exclude the measurements. The machine
was shared with other work (load average {load} at the start and the end): compare the two runs of a row, not
seconds across rows or sections. Figures for chapter 02: `gancourse/results/pggan_growing.json`.

Per image: the fixed run's seconds over the progressive run's for the same images. To quality: training seconds
until shape_ok first reaches the threshold at the final resolution (fully faded in), progressive / fixed
(speed-up). Last column: real held-out images at that resolution.

| final resolution | budget | per image | {header} | last shape_ok (prog. / fixed) | real |
|---|---|---|{'---|' * len(thresholds)}---|---|
{chr(10).join(rows)}"""

"""PGGAN: what a training image costs at each stage of the growth, which is where the paper's speed-up comes from.

A progressive run is cheaper per image only by as much as its small stages are cheaper than the final one.
`measure` times training steps of the `pggan` preset's networks held at each resolution (alpha 1, the preset's
minibatch there), once with the preset's channels (min(fmap_base / 2^stage, fmap_max): they halve with every
doubling, so every block costs about the same) and once with channels of one width at every resolution, as the
paper's networks have up to 32x32 (512 channels from 4x4 to 32x32), where a block costs four times the one below.
`report` writes the section from those figures alone.
"""

from __future__ import annotations

import datetime
import warnings

import torch

from ganlib.models.pggan import channels
from ganlib.progressive import GrowthSchedule

from .. import recipes
from .core import machine

TITLE = "PGGAN: the cost of a training image at each resolution of the growth"
CONSTANT_WIDTH = 16  # channels of the constant-width networks (the paper: 512 up to 32x32)


def images_per_second(profile: str, nets: dict, resolution: int, minibatch: int, steps: int) -> float:
    """Training images per second of the preset's trainer held at `resolution` (fully faded in: its first
    stage, longer than the steps timed), where its schedule's minibatch is `minibatch`, with the G and D
    arguments `nets`, over `steps` steps after two of warm-up, in this process's threads."""
    preset = recipes.preset("pggan", profile)
    growth = dict(preset["trainer"]["growth"], start_resolution=resolution,
                  stable_kimg=(3 + steps) * minibatch / 1000)  # the timed steps never reach the next fade
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the schedule's "ends before the final resolution" warning
        t = recipes.make_trainer("pggan", profile=profile, device="cpu", steps=2 + steps,
                                 preset_overrides={"trainer": {"growth": growth}, "G": nets["G"], "D": nets["D"]})
    t.train(2, progress=False)
    seconds, images = t.elapsed, t.images_seen
    t.train(2 + steps, progress=False)
    assert (t.resolution, t.alpha) == (resolution, 1.0)
    return (t.images_seen - images) / (t.elapsed - seconds)


def measure(quick: bool = False) -> dict:
    """Images per second at every resolution from 4x4 to the preset's final one, in one thread, for the preset's
    networks and for constant-width ones; the two are timed in turns at each resolution."""
    torch.set_num_threads(1)
    profile = "smoke" if quick else "cpu"
    preset = recipes.preset("pggan", profile)
    final, batch = preset["resolution"], preset["train"]["batch_size"]
    wide = CONSTANT_WIDTH * final  # fmap_base / 2^stage >= the width at every stage up to the final one
    nets = {"preset": {"G": preset["G"], "D": preset["D"]},
            "constant": {"G": dict(preset["G"], fmap_base=wide, fmap_max=CONSTANT_WIDTH),
                         "D": dict(preset["D"], fmap_base=wide, fmap_max=CONSTANT_WIDTH)}}
    schedule = GrowthSchedule(final, **preset["trainer"]["growth"])
    rows = []
    for r in (4 << i for i in range(final.bit_length() - 2)):  # 4x4 up to the final resolution
        minibatch = schedule.batch(r, batch)
        steps = 3 if quick else max(10, 2000 // minibatch)
        row = {"resolution": r, "minibatch": minibatch}
        for name, n in nets.items():
            row[name] = {"channels": channels(r, n["G"]["fmap_base"], n["G"]["fmap_max"]),
                         "images_per_s": round(images_per_second(profile, n, r, minibatch, steps), 1)}
        rows.append(row)
    return {"profile": profile, "date": datetime.date.today().isoformat(), "machine": machine(), "threads": 1,
            "final": final, "fmap": {name: {k: n["G"][k] for k in ("fmap_base", "fmap_max")}
                                     for name, n in nets.items()}, "rows": rows}


def report(measured: dict) -> str:
    """The section's markdown, from `measure`'s figures alone."""
    final = measured["rows"][-1]
    lines = []
    for row in measured["rows"]:
        r = row["resolution"]
        cells = [f"{row[name]['channels']} | {row[name]['images_per_s']:.0f} | "
                 f"{final[name]['images_per_s'] / row[name]['images_per_s']:.2f}" for name in ("preset", "constant")]
        lines.append(f"| {r}x{r} | {row['minibatch']} | {' | '.join(cells)} |")
    preset, constant = measured["fmap"]["preset"], measured["fmap"]["constant"]
    res = measured["final"]
    return f"""Training steps (WGAN-GP with its gradient penalty, both networks' updates, the EMA) of the `pggan`
`{measured['profile']}` preset's trainer held at each resolution, fully faded in, with the preset's minibatch there,
in one thread: the preset's networks (fmap_base {preset['fmap_base']}, fmap_max {preset['fmap_max']}: channels
halve with every doubling) against networks of one width at every resolution (fmap_max {constant['fmap_max']}, as the
paper's 512 channels from 4x4 to 32x32), timed in turns. Cost: seconds per image relative to {res}x{res} (1 at the
final resolution; a stage with cost 0.25 trains four images in the time of one at the final resolution).

| resolution | minibatch | preset: channels | images/s | cost | constant width: channels | images/s | cost |
|---|---|---|---|---|---|---|---|
{chr(10).join(lines)}"""

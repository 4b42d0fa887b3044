"""DCGAN on digits: ganlib's recipe against a plain PyTorch-tutorial-style DCGAN, same CPU time, and what
each of the five differences between them buys (the preset with one of them set back to the tutorial's)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from ganlib import data as datasets
from ganlib import models
from ganlib.models import dcgan
from ganlib.train import Trainer

from .. import evaluation, recipes

TITLE = "DCGAN on digits, cpu profile: ganlib against a tutorial-style DCGAN"
TUTORIAL = dict(batch_size=128, lr=2e-4)  # the tutorial's settings where ganlib's cpu preset differs
# (row, D's normalisation, training options, sample from the EMA of G): the preset with one difference from
# the tutorial undone; None keeps the preset's value
ABLATIONS = [
    ("preset with batch norm in D", "batch", {}, True),
    ("preset without R1", None, dict(r1_gamma=0.0), True),
    ("preset sampled from G, not its EMA", None, {}, False),
    (f"preset at learning rate {TUTORIAL['lr']:g}", None, dict(lr_g=TUTORIAL["lr"], lr_d=TUTORIAL["lr"]), True),
    (f"preset at batch {TUTORIAL['batch_size']}", None, dict(batch_size=TUTORIAL["batch_size"]), True),
]


def tutorial_dcgan(data: datasets.ImageData, seconds: float, z_dim: int, width: int,
                   batch: int = TUTORIAL["batch_size"], seed: int = 0) -> tuple[torch.nn.Module, int, float]:
    """The PyTorch DCGAN tutorial's recipe, written out plainly: batch norm in G and D, sigmoid + BCE on
    separate real and fake batches, Adam 2e-4 with betas (0.5, 0.999), no EMA, no regulariser. Trains for
    `seconds` of this process's CPU time; returns (G, steps done, wall seconds)."""
    torch.manual_seed(seed)
    G = dcgan.Generator(data.resolution, data.channels, z_dim=z_dim, width=width)
    D = dcgan.Discriminator(data.resolution, data.channels, width=width, d_norm="batch")
    bce = torch.nn.BCELoss()
    opt_g = torch.optim.Adam(G.parameters(), lr=TUTORIAL["lr"], betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=TUTORIAL["lr"], betas=(0.5, 0.999))
    steps, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.process_time() - cpu < seconds:
        real, _ = data.batch(torch.randint(len(data), (batch,)))
        D.zero_grad()
        out = torch.sigmoid(D(real))
        bce(out, torch.ones_like(out)).backward()
        fake = G(torch.randn(batch, z_dim))
        out = torch.sigmoid(D(fake.detach()))
        bce(out, torch.zeros_like(out)).backward()
        opt_d.step()
        G.zero_grad()
        out = torch.sigmoid(D(fake))
        bce(out, torch.ones_like(out)).backward()
        opt_g.step()
        steps += 1
    return G, steps, time.perf_counter() - start


def _score_draws(sample: Callable[[int], torch.Tensor], judge: evaluation.ImageJudge, n: int, draws: int = 5) -> dict:
    """Mean and std of each metric over `draws` independent sets of `n` samples: {metric: [mean, std]}."""
    scores = [judge.score(sample(seed)) for seed in range(draws)]
    return {k: [statistics.mean(s[k] for s in scores), statistics.pstdev(s[k] for s in scores)]
            for k in ("fd", "classes", "confidence")}


def _preset_trainer(steps: int, d_norm: str | None = None, **train) -> Trainer:
    """The `dcgan` cpu preset, seed 0, with D's normalisation and some training options changed."""
    p = recipes.preset("dcgan", "cpu")
    torch.manual_seed(0)
    return recipes.make_trainer("dcgan", profile="cpu", device="cpu", steps=steps,
                                preset_overrides={"D": {**p["D"], "d_norm": d_norm or p["D"]["d_norm"]}}, **train)


def _train_for(trainer: Trainer, seconds: float | None = None, chunk: int = 25) -> float:
    """Train for the preset's steps (`seconds` None) or in chunks of `chunk` steps until `seconds` of this
    process's CPU time have passed; returns the CPU seconds spent."""
    start = time.process_time()
    if seconds is None:
        trainer.train()
    while seconds is not None and time.process_time() - start < seconds:
        trainer.train(trainer.step + chunk, progress=False)
    return time.process_time() - start


def measure(quick: bool = False) -> dict:
    preset = recipes.preset("dcgan", "cpu")
    steps = 30 if quick else preset["train"]["steps"]
    trainer = _preset_trainer(steps)
    budget = _train_for(trainer)
    judge = evaluation.judge_for("digits", trainer.data.resolution)
    test = datasets.load("digits", trainer.data.resolution, split="test")
    n = len(test)

    def row(name: str, t: Trainer, cpu: float, ema: bool) -> dict:
        scores = _score_draws(lambda s: t.sample(n, seed=s, ema=ema)[0], judge, n)
        return dict(name=name, steps=t.step, batch=t.cfg.batch_size, wall=t.elapsed, cpu=cpu, **scores)

    ours = row("ganlib `dcgan` cpu preset", trainer, budget, True)
    ablations = []
    for name, d_norm, train, ema in ABLATIONS:
        if (d_norm, train) == (None, {}):
            ablations.append(row(name, trainer, budget, ema))
        else:
            t = _preset_trainer(steps, d_norm, **train)
            ablations.append(row(name, t, _train_for(t, budget), ema))
    cpu = time.process_time()
    G_base, base_steps, base_wall = tutorial_dcgan(trainer.data, budget, z_dim=preset["G"]["z_dim"],
                                                   width=preset["G"]["width"])
    cpu = time.process_time() - cpu
    G_base.train()  # the tutorial samples with G in training mode (batch statistics)

    def base_sample(seed):
        with torch.no_grad():
            return G_base(torch.randn(n, G_base.z_dim, generator=torch.Generator().manual_seed(seed)))

    base = dict(name="tutorial-style DCGAN", steps=base_steps, batch=TUTORIAL["batch_size"], wall=base_wall,
                cpu=cpu, **_score_draws(base_sample, judge, n))
    torch.manual_seed(0)
    G0, _ = models.build(trainer.spec)
    untrained = _score_draws(lambda s: G0.sample(n, seed=s)[0], judge, n)
    cfg = trainer.cfg
    return dict(resolution=trainer.data.resolution, train_images=len(trainer.data), judge_accuracy=judge.test_accuracy,
                n=n, draws=5, floor=judge.score(test.batch(torch.arange(n))[0]), ours=ours, tutorial=base,
                untrained=untrained, ablations=ablations, r1_gamma=cfg.r1_gamma, r1_every=cfg.r1_every,
                ema_half_life_kimg=cfg.ema_half_life_kimg, batch=cfg.batch_size, lr=cfg.lr_g,
                tutorial_batch=TUTORIAL["batch_size"], tutorial_lr=TUTORIAL["lr"])


def _cells(m: dict) -> str:
    return f"{m['fd'][0]:.1f} ± {m['fd'][1]:.1f} | {m['classes'][0]:.1f} | {m['confidence'][0]:.3f}"


def _row(m: dict, name: str | None = None) -> str:
    return (f"| {name or m['name']} ({m['steps']} steps, batch {m['batch']}) | {m['wall']:.0f} / {m['cpu']:.0f} | "
            f"{_cells(m)} |")


def report(measured: dict) -> str:
    m = measured
    floor, ours, base = m["floor"], m["ours"], m["tutorial"]
    rows = [f"| real held-out digits (floor) | - / - | {floor['fd']:.1f} | {floor['classes']} | "
            f"{floor['confidence']:.3f} |", _row(ours), _row(base),
            f"| untrained generator | 0 / 0 | {_cells(m['untrained'])} |"]
    ablation_rows = [_row(ours, "the preset"), *map(_row, m["ablations"]), _row(base)]
    res, nl = m["resolution"], "\n"
    return f"""Digits at {res}x{res} ({m['train_images']} training images). Metrics from the digits
classifier (held-out accuracy {m['judge_accuracy']:.3f}): Fréchet distance of its features to the training images,
classes covered (of 10), mean confidence; generators are scored on {m['n']} samples (the size of the held-out set,
so all rows share N), mean ± std over {m['draws']} draws. Every generator trained from seed 0 for the same CPU
time of one process in this run (the preset's {m['ours']['steps']} steps; on a shared machine the wall time is
inflated and varies from run to run, the CPU time is what dedicated cores would take). ganlib's recipe
differs from the tutorial's in three ways, each from the literature: no batch norm in D, R1 on real images (gamma
{m['r1_gamma']:g}, lazily every {m['r1_every']} steps), and sampling from an EMA of G's weights (half-life
{m['ema_half_life_kimg']:g} kimg); and in two settings: batch {m['batch']} (the tutorial: {m['tutorial_batch']}) and
Adam's learning rate {m['lr']:g} (the tutorial: {m['tutorial_lr']:g}).

| model | train s (wall / CPU) | FD | classes | confidence |
|---|---|---|---|---|
{nl.join(rows)}

ganlib / tutorial FD ratio: **{ours['fd'][0] / base['fd'][0]:.2f}**.

**One difference at a time**: the preset with one of the five differences set back to the tutorial's, each
trained from seed 0 for the preset's CPU time (the EMA row is the preset's own run, sampled from G in eval
mode, with its running statistics; the tutorial samples G in training mode).

| model | train s (wall / CPU) | FD | classes | confidence |
|---|---|---|---|---|
{nl.join(ablation_rows)}"""

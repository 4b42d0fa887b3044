"""DCGAN on digits: ganlib's recipe against a plain PyTorch-tutorial-style DCGAN, same wall time."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from .. import data as datasets
from .. import metrics, models, recipes
from ..models import dcgan


def tutorial_dcgan(data: datasets.ImageData, seconds: float, z_dim: int, width: int, batch: int = 128,
                   seed: int = 0) -> tuple[torch.nn.Module, int]:
    """The PyTorch DCGAN tutorial's recipe, written out plainly: batch norm in G and D, sigmoid + BCE on
    separate real and fake batches, Adam 2e-4 with betas (0.5, 0.999), no EMA, no regulariser. Trains for
    `seconds` of wall time; returns (G, steps done)."""
    torch.manual_seed(seed)
    G = dcgan.Generator(data.resolution, data.channels, z_dim=z_dim, width=width)
    D = dcgan.Discriminator(data.resolution, data.channels, width=width, d_norm="batch")
    bce = torch.nn.BCELoss()
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
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
    return G, steps


def _score_draws(sample: Callable[[int], torch.Tensor], judge: metrics.ImageJudge, n: int, draws: int = 5) -> dict:
    """Mean and std of each metric over `draws` independent sets of `n` samples."""
    scores = [judge.score(sample(seed)) for seed in range(draws)]
    return {k: (statistics.mean(s[k] for s in scores), statistics.pstdev(s[k] for s in scores))
            for k in ("fd", "classes", "confidence")}


def bench_dcgan_digits(quick: bool = False) -> str:
    preset = recipes.preset("dcgan", "cpu")
    steps = 30 if quick else preset["train"]["steps"]
    trainer = recipes.make_trainer("dcgan", profile="cpu", device="cpu", steps=steps)
    trainer.train()
    wall = trainer.elapsed
    judge = metrics.judge_for("digits", trainer.data.resolution)
    test = datasets.load("digits", trainer.data.resolution, split="test")
    n = len(test)
    ours = _score_draws(lambda s: trainer.sample(n, seed=s)[0], judge, n)
    G_base, base_steps = tutorial_dcgan(trainer.data, wall, z_dim=preset["G"]["z_dim"], width=preset["G"]["width"])
    G_base.train()  # the tutorial samples with G in training mode (batch statistics)

    def base_sample(seed):
        with torch.no_grad():
            return G_base(torch.randn(n, G_base.z_dim, generator=torch.Generator().manual_seed(seed)))

    base = _score_draws(base_sample, judge, n)
    torch.manual_seed(0)
    G0, _ = models.build(trainer.spec)
    untrained = _score_draws(lambda s: models.sample(G0, n, seed=s)[0], judge, n)
    floor = judge.score(test.batch(torch.arange(n))[0])
    fmt = lambda m, k: f"{m[k][0]:.1f} ± {m[k][1]:.1f}" if k == "fd" else (
        f"{m[k][0]:.1f}" if k == "classes" else f"{m[k][0]:.3f}")
    rows = [
        ("real held-out digits (floor)", "-", f"{floor['fd']:.1f}", floor["classes"], f"{floor['confidence']:.3f}"),
        (f"ganlib `dcgan` cpu preset ({trainer.step} steps, batch {trainer.cfg.batch_size})", f"{wall:.0f}",
         fmt(ours, "fd"), fmt(ours, "classes"), fmt(ours, "confidence")),
        (f"tutorial-style DCGAN ({base_steps} steps, batch 128)", f"{wall:.0f}", fmt(base, "fd"),
         fmt(base, "classes"), fmt(base, "confidence")),
        ("untrained generator", "0", fmt(untrained, "fd"), fmt(untrained, "classes"), fmt(untrained, "confidence")),
    ]
    ratio = ours["fd"][0] / base["fd"][0]
    table = "\n".join(f"| {' | '.join(str(c) for c in r)} |" for r in rows)
    res = trainer.data.resolution
    return f"""Digits at {res}x{res} ({len(trainer.data)} training images). Metrics from the digits
classifier (held-out accuracy {judge.test_accuracy:.3f}): Fréchet distance of its features to the training images,
classes covered (of 10), mean confidence; generators are scored on {n} samples (the size of the held-out set,
so all rows share N), mean ± std over 5 draws. Both generators trained for the same wall time in this run.
ganlib's recipe differs from the tutorial's in three ways, each from the literature: no batch norm in D,
R1 on real images (gamma {trainer.cfg.r1_gamma}, lazily every {trainer.cfg.r1_every} steps), and sampling
from an EMA of G's weights (half-life {trainer.cfg.ema_half_life_kimg} kimg); and in two settings: batch
{trainer.cfg.batch_size} (the tutorial: 128) and Adam's learning rate {trainer.cfg.lr_g:g} (the tutorial: 2e-4).

| model | train s | FD | classes | confidence |
|---|---|---|---|---|
{table}

ganlib / tutorial FD ratio: **{ratio:.2f}**."""

"""Throughput: ganlib's Trainer against a plain loop doing the same work."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from ganlib import data as datasets
from ganlib import models
from ganlib.losses import d_loss_logistic, g_loss_nonsaturating
from ganlib.train import TrainConfig, Trainer

from .. import recipes


class PlainLoop:
    """The same DCGAN training written by hand, with nothing of ganlib: `run(steps)` trains and returns the
    seconds it took. One D update, then one G update per step, non-saturating loss, Adam (0.5, 0.999).

    `fresh_fakes`: G's update draws new latents, as `Trainer` does (and the StyleGAN2 authors' loop, whose
    phases each draw their own); otherwise it reuses the fakes D just saw, as the PyTorch DCGAN tutorial does,
    which saves one G forward per step but needs D's weight gradients in G's backward pass.
    """

    def __init__(self, G, D, data, batch: int, fresh_fakes: bool, lr: float = 2e-4, seed: int = 0):
        self.G, self.D, self.data, self.batch, self.fresh_fakes = G, D, data, batch, fresh_fakes
        self.g = torch.Generator().manual_seed(seed)
        self.opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))

    def run(self, steps: int) -> float:
        G, D, g, batch = self.G, self.D, self.g, self.batch
        start = time.perf_counter()
        for _ in range(steps):
            real, _ = self.data.batch(torch.randint(len(self.data), (batch,), generator=g))
            fake = G(torch.randn(batch, G.z_dim, generator=g))
            loss_d = d_loss_logistic(D(real), D(fake.detach()))
            self.opt_d.zero_grad()
            loss_d.backward()
            self.opt_d.step()
            if self.fresh_fakes:
                fake = G(torch.randn(batch, G.z_dim, generator=g))
            loss_g = g_loss_nonsaturating(D(fake))
            self.opt_g.zero_grad()
            loss_g.backward()
            self.opt_g.step()
        return time.perf_counter() - start


TITLE = "Training-loop throughput: ganlib against a plain loop"


def measure(quick: bool = False) -> dict:
    """Three loops on the `dcgan` cpu preset's networks (``ganlib``: `Trainer`; ``fresh``: the same algorithm by
    hand; ``tutorial``: the tutorial's, by hand), in turn, `chunk` steps at a time for `rounds` rounds after one
    of warm-up: each round's seconds per loop."""
    chunk, rounds = (5, 2) if quick else (25, 16)
    preset = recipes.preset("dcgan", "cpu")
    data = datasets.load("digits", preset["resolution"])
    spec = recipes.default_spec("dcgan", preset, data)
    batch = preset["train"]["batch_size"]
    loops: dict[str, Callable[[int], float]] = {}
    torch.manual_seed(0)
    G, D = models.build(spec)
    trainer = Trainer(G, D, data, TrainConfig(steps=chunk * (rounds + 1), batch_size=batch, log_every=chunk),
                      device="cpu")

    def ours(steps: int) -> float:
        start = time.perf_counter()
        trainer.train(trainer.step + steps, progress=False)
        return time.perf_counter() - start

    loops["ganlib"] = ours
    for name, fresh in (("fresh", True), ("tutorial", False)):
        torch.manual_seed(0)
        loops[name] = PlainLoop(*models.build(spec), data, batch, fresh_fakes=fresh).run
    seconds = {name: [] for name in loops}
    for r in range(rounds + 1):  # short runs in turn, so that changes in machine load hit every loop alike
        for name, run in loops.items():
            s = run(chunk)
            if r > 0:  # the first round warms up
                seconds[name].append(s)
    return {"resolution": preset["resolution"], "batch": batch, "chunk": chunk, "rounds": rounds, "seconds": seconds}


def report(measured: dict) -> str:
    resolution, batch, chunk, rounds, seconds = (measured[k] for k in ("resolution", "batch", "chunk", "rounds",
                                                                       "seconds"))
    speed = {name: chunk * rounds * batch / sum(s) for name, s in seconds.items()}  # images per second

    def ratio(name: str) -> tuple[str, str]:  # ganlib's speed over this loop's, and the spread of the per-round ratios
        rs = [o / p for o, p in zip(seconds[name], seconds["ganlib"])]
        return (f"{speed['ganlib'] / speed[name]:.2f}",
                f"per-round ratios: median {statistics.median(rs):.2f}, range {min(rs):.2f} to {max(rs):.2f}")

    same, tutorial = ratio("fresh"), ratio("tutorial")
    return f"""The `dcgan` cpu preset's networks on digits {resolution}x{resolution}, batch {batch},
one D and one G update per step, non-saturating loss, no EMA and no regulariser; the three loops train in turn,
{chunk} steps at a time, for {rounds} rounds after one round of warm-up; real images per second over all rounds.

| loop | images/s | ganlib / this loop |
|---|---|---|
| `ganlib.train.Trainer` (G's update draws fresh latents) | {speed['ganlib']:.0f} | |
| plain hand-written loop, the same algorithm | {speed['fresh']:.0f} | **{same[0]}** |
| plain hand-written loop, the tutorial's (G's update reuses D's fakes) | {speed['tutorial']:.0f} | {tutorial[0]} |

The first ratio is what the loop costs: ganlib against the same algorithm written by hand ({same[1]}). The
second compares two algorithms: reusing D's fakes saves one G forward per step but computes D's weight gradients in
G's update; ganlib draws fresh latents, as the StyleGAN2 authors' loop does, because chapters change how G's update
makes its fakes (StyleGAN's style mixing and path length), and freezes D during G's update ({tutorial[1]})."""

"""BigGAN: what each trick buys, batch size at an equal image budget, the truncation curve."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from .. import data as datasets
from .. import metrics, recipes
from ..train import Trainer


def _biggan_run(steps: int, G: dict | None = None, D: dict | None = None, **train) -> tuple[Trainer, float]:
    """The `biggan` cpu preset on digits with some networks' arguments and training options changed; returns
    the trained trainer and the CPU seconds its training took."""
    p = recipes.preset("biggan", "cpu")
    torch.manual_seed(0)
    t = recipes.make_trainer("biggan", profile="cpu", device="cpu", steps=steps,
                             preset_overrides={"G": {**p["G"], **(G or {})}, "D": {**p["D"], **(D or {})}}, **train)
    cpu = time.process_time()
    t.train()
    return t, time.process_time() - cpu


def _conditional_scores(sample: Callable[[torch.Tensor, int], torch.Tensor], judge: metrics.ImageJudge, n: int,
                        draws: int = 3) -> dict:
    """Mean and std over `draws` of FD, classes covered and the share classified as the requested class, for
    `n` samples with labels 0, 1, ..., K-1, 0, 1, ..."""
    labels = torch.arange(n) % judge.num_classes
    scores = [judge.score(sample(labels, seed), labels) for seed in range(draws)]
    return {k: (statistics.mean(s[k] for s in scores), statistics.pstdev(s[k] for s in scores))
            for k in ("fd", "classes", "label_accuracy")}


def _pixel_variety(x: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over classes of the per-pixel standard deviation across that class's images: how much images of
    one class differ from each other."""
    return statistics.mean(x[labels == k].std(dim=0).mean().item() for k in labels.unique().tolist())


def bench_biggan_tricks(quick: bool = False) -> str:
    preset = recipes.preset("biggan", "cpu")
    steps = 20 if quick else preset["train"]["steps"]
    batch = preset["train"]["batch_size"]
    judge = metrics.judge_for("digits", preset["resolution"])
    n = 50 if quick else 1000
    no_sn, no_attn = dict(spectral_norm=False), dict(attention=())
    plain = dict(loss="nonsaturating", ortho_beta=0.0, ema_beta=None)
    ladder = [  # (row, G, D, training options): each run adds one trick to the one above
        ("class-conditional nets (CBN G, projection D), no tricks, non-saturating loss",
         {**no_sn, **no_attn}, {**no_sn, **no_attn}, plain),
        ("+ spectral norm in G and D, hinge loss", no_attn, no_attn, dict(plain, loss="hinge")),
        ("+ self-attention at 8x8 in G and D", {}, {}, dict(plain, loss="hinge")),
        ("+ orthogonal regularisation of G (beta 1e-4)", {}, {}, {}),  # the cpu preset; EMA does not change G
    ]
    fmt = lambda m, k, f: f"{m[k][0]:{f}} ± {m[k][1]:{f}}"

    def scores(t: Trainer, ema: bool) -> dict:
        return _conditional_scores(lambda labels, seed: t.sample(len(labels), seed, labels, ema=ema)[0],
                                   judge, n)

    def row(name: str, t: Trainer, cpu: float, m: dict) -> str:
        return (f"| {name} | {t.elapsed:.0f} / {cpu:.0f} | {fmt(m, 'fd', '.1f')} | {m['classes'][0]:.1f} | "
                f"{fmt(m, 'label_accuracy', '.3f')} |")

    rows = []
    for name, g, d, train in ladder:
        full, cpu = _biggan_run(steps, g, d, **train)
        rows.append(row(name, full, cpu, scores(full, ema=False)))
    final = scores(full, ema=True)
    rows.append(row(f"+ sampling from the EMA of G (decay {full.cfg.ema_beta:g} from step {full.cfg.ema_start}): "
                    f"**the cpu preset**", full, cpu, final))
    micro, accumulate = batch, 4
    ema = full.cfg  # the same EMA half-life in images: 1/4 of the updates, each decaying 4x as much
    t, t_cpu = _biggan_run(max(1, steps // accumulate), batch_size=micro, accumulate=accumulate,
                           ema_beta=ema.ema_beta ** accumulate, ema_start=ema.ema_start // accumulate)
    m = scores(t, ema=True)
    batch_rows = [f"| {batch} | {steps} | {steps * batch} | {fmt(final, 'fd', '.1f')} | "
                  f"{fmt(final, 'label_accuracy', '.3f')} | {full.elapsed:.0f} / {cpu:.0f} |",
                  f"| {micro} x {accumulate} = {micro * accumulate} | {t.step} | {t.step * micro * accumulate} | "
                  f"{fmt(m, 'fd', '.1f')} | {fmt(m, 'label_accuracy', '.3f')} | {t.elapsed:.0f} / {t_cpu:.0f} |"]
    test = datasets.load("digits", preset["resolution"], split="test")
    real_variety = _pixel_variety(test.batch(torch.arange(len(test)))[0], test.labels)
    curve = []
    labels = torch.arange(n) % judge.num_classes
    for psi in (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, None):
        x, _ = full.sample(n, 0, labels, truncation=psi)
        m = judge.score(x, labels)
        curve.append(f"| {psi if psi is not None else 'none'} | {m['label_accuracy']:.3f} | {m['confidence']:.3f} | "
                     f"{m['fd']:.1f} | {_pixel_variety(x, labels):.3f} |")
    p = preset
    return f"""Class-conditional digits at {p['resolution']}x{p['resolution']}, the `biggan` cpu preset (G and D
width {p['G']['width']}, z {p['G']['z_dim']} in {len(full.G.blocks) + 1} chunks, shared embedding
{p['G']['shared_dim']}, Adam {p['train']['lr_g']:g} / {p['train']['lr_d']:g} with betas (0, 0.999), batch {batch}),
{steps} steps per training run, seed 0; the last two rows are one run, sampled from G and from its EMA.
Training time is wall-clock and CPU seconds of one process (on a shared machine the wall time is inflated;
the CPU time is what dedicated cores would take). Metrics from the digits classifier (held-out accuracy
{judge.test_accuracy:.3f}): Fréchet distance of its features to the training images, classes covered (of 10),
and the share of samples classified as the class they were generated for; {n} samples per draw (labels 0-9
in turn), mean ± std over 3 draws of the same trained G. One training seed per run: differences smaller
than the seed-to-seed spread (not measured here) are noise.

| model | train s (wall / CPU) | FD | classes | requested class |
|---|---|---|---|---|
{chr(10).join(rows)}

**Batch size at an equal image budget**: the cpu preset against 4x the batch for a quarter of the steps,
by gradient accumulation (4 micro-batches of {micro} per update; batch norm sees each micro-batch on its own),
both sampled from the EMA of G (for the large batch: decay {t.cfg.ema_beta:.4f} from step {t.cfg.ema_start}, the
same half-life in images):

| batch | steps | images | FD | requested class | train s (wall / CPU) |
|---|---|---|---|---|---|
{chr(10).join(batch_rows)}

**Truncation** (the last model, EMA G, z resampled to [-psi, psi], batch-norm statistics measured anew for each
psi): share of the requested class, mean classifier confidence, FD, and the variety within a class (mean
per-pixel std across one class's images; real held-out digits: {real_variety:.3f}).

| psi | requested class | confidence | FD | variety |
|---|---|---|---|---|
{chr(10).join(curve)}"""

"""BigGAN: what each trick buys, batch size at an equal image budget, the truncation curve with and without
orthogonal regularisation, and which batch-norm statistics to sample with."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from ganlib import data as datasets
from ganlib.train import Trainer

from .. import evaluation, recipes

TITLE = "BigGAN on digits, cpu profile: each trick, batch size, truncation, sampling statistics"
PSIS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, None)  # truncation thresholds of the curve (None: no truncation)
STATISTICS_PSIS = (None, 1.0, 0.5)  # the thresholds at which the three sampling statistics are compared
# how a sampling G normalises: its name in the table, and what it does
STATISTICS = {
    "standing": "standing statistics (ganlib's sampling): running statistics reset and re-measured as a plain "
                "average over 16 batches of 64 from the sampling distribution (z truncated at the same psi, random "
                "labels), at the EMA weights, then eval mode",
    "running": "G's running statistics: the momentum-0.1 averages the training G collected over its last batches "
               "(copied into the EMA G with its weights' average), eval mode",
    "batch": "batch statistics: every sampling batch (256 images) normalised with its own mean and variance, "
             "batch norm in training mode",
}


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


def _pixel_variety(x: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over classes of the per-pixel standard deviation across that class's images: how much images of
    one class differ from each other."""
    return statistics.mean(x[labels == k].std(dim=0).mean().item() for k in labels.unique().tolist())


def _conditional_scores(sample: Callable[[torch.Tensor, int], torch.Tensor], judge: evaluation.ImageJudge, n: int,
                        draws: int = 3) -> dict:
    """{metric: [mean, std]} over `draws` of FD, classes covered, the share classified as the requested class,
    mean confidence and the variety within a class, for `n` samples with labels 0, 1, ..., K-1, 0, 1, ..."""
    labels = torch.arange(n) % judge.num_classes
    scores = []
    for seed in range(draws):
        x = sample(labels, seed)
        scores.append({**judge.score(x, labels), "variety": _pixel_variety(x, labels)})
    return {k: [statistics.mean(s[k] for s in scores), statistics.pstdev(s[k] for s in scores)]
            for k in ("fd", "classes", "label_accuracy", "confidence", "variety")}


@torch.no_grad()
def measure(quick: bool = False) -> dict:
    preset = recipes.preset("biggan", "cpu")
    steps = 20 if quick else preset["train"]["steps"]
    batch = preset["train"]["batch_size"]
    judge = evaluation.judge_for("digits", preset["resolution"])
    n = 50 if quick else 1000
    no_sn, no_attn = dict(spectral_norm=False), dict(attention=())
    plain = dict(loss="nonsaturating", ortho_beta=0.0, ema_beta=None)
    ladder = [  # (row, G, D, training options): each run adds one trick to the one above
        ("class-conditional nets (CBN G, projection D), no tricks, non-saturating loss",
         {**no_sn, **no_attn}, {**no_sn, **no_attn}, plain),
        ("+ spectral norm in G and D, hinge loss", no_attn, no_attn, dict(plain, loss="hinge")),
        # keeps the preset's EMA (it does not change G) for the truncation curve without orthogonal regularisation
        ("+ self-attention at 8x8 in G and D", {}, {}, dict(loss="hinge", ortho_beta=0.0)),
        ("+ orthogonal regularisation of G (beta 1e-4)", {}, {}, {}),  # the cpu preset
    ]

    def scores(t: Trainer, ema: bool) -> dict:
        return _conditional_scores(lambda labels, seed: t.sample(len(labels), seed, labels, ema=ema)[0],
                                   judge, n)

    rows, runs = [], []
    for name, g, d, train in ladder:
        t, cpu = _biggan_run(steps, g, d, **train)
        trained = copy.deepcopy(t.G_ema) if t.G_ema is not None else None  # before sampling re-measures its BN
        runs.append((t, trained))
        rows.append(dict(name=name, wall=t.elapsed, cpu=cpu, **scores(t, ema=False)))
    full, cpu = runs[-1][0], rows[-1]["cpu"]
    rows.append(dict(name=f"+ sampling from the EMA of G (decay {full.cfg.ema_beta:g} from step {full.cfg.ema_start}): "
                          f"**the cpu preset**", wall=full.elapsed, cpu=cpu, **scores(full, ema=True)))
    micro, accumulate = batch, 4
    ema = full.cfg  # the same EMA half-life in images: 1/4 of the updates, each decaying 4x as much
    t, t_cpu = _biggan_run(max(1, steps // accumulate), batch_size=micro, accumulate=accumulate,
                           ema_beta=ema.ema_beta ** accumulate, ema_start=ema.ema_start // accumulate)
    batch_rows = [dict(batch=batch, micro=batch, accumulate=1, steps=full.step, images=full.step * batch,
                       wall=full.elapsed, cpu=cpu, **{k: rows[-1][k] for k in ("fd", "label_accuracy")}),
                  dict(batch=micro * accumulate, micro=micro, accumulate=accumulate, steps=t.step,
                       images=t.step * micro * accumulate, wall=t.elapsed, cpu=t_cpu, ema_beta=t.cfg.ema_beta,
                       ema_start=t.cfg.ema_start, **{k: v for k, v in scores(t, ema=True).items()
                                                    if k in ("fd", "label_accuracy")})]
    test = datasets.load("digits", preset["resolution"], split="test")
    (_, no_ortho), (_, ortho) = runs[2], runs[3]

    def scored(G: nn.Module, how: str, psi: float | None) -> dict:
        def draw(labels: torch.Tensor, seed: int) -> torch.Tensor:  # on a copy: standing statistics replace G's
            return copy.deepcopy(G).sample(len(labels), seed, psi, labels=labels, statistics=how)[0]
        return _conditional_scores(draw, judge, n)

    curves = {name: [dict(psi=psi, **scored(G, "standing", psi)) for psi in PSIS]
              for name, G in (("without", no_ortho), ("with", ortho))}
    sampling = [dict(statistics=how, psi=psi, **scored(ortho, how, psi)) for psi in STATISTICS_PSIS
                for how in STATISTICS]
    p = preset
    return dict(resolution=p["resolution"], width=p["G"]["width"], z_dim=p["G"]["z_dim"], chunks=len(full.G.blocks) + 1,
                shared_dim=p["G"]["shared_dim"], lr_g=p["train"]["lr_g"], lr_d=p["train"]["lr_d"], batch=batch,
                steps=steps, n=n, draws=3, judge_accuracy=judge.test_accuracy, rows=rows, batch_rows=batch_rows,
                real_variety=_pixel_variety(test.batch(torch.arange(len(test)))[0], test.labels),
                ema_beta=full.cfg.ema_beta, ema_start=full.cfg.ema_start, curves=curves, sampling=sampling,
                statistics=STATISTICS)


def _pm(m: dict, k: str, f: str) -> str:
    return f"{m[k][0]:{f}} ± {m[k][1]:{f}}"


def _psi(psi: float | None) -> str:
    return "none" if psi is None else f"{psi:g}"


def report(measured: dict) -> str:
    m, nl = measured, "\n"
    rows = [f"| {r['name']} | {r['wall']:.0f} / {r['cpu']:.0f} | {_pm(r, 'fd', '.1f')} | {r['classes'][0]:.1f} | "
            f"{_pm(r, 'label_accuracy', '.3f')} |" for r in m["rows"]]
    size = lambda b: f"{b['micro']} x {b['accumulate']} = {b['batch']}" if b["accumulate"] > 1 else f"{b['batch']}"
    batch_rows = [f"| {size(b)} | {b['steps']} | {b['images']} | {_pm(b, 'fd', '.1f')} | "
                  f"{_pm(b, 'label_accuracy', '.3f')} | {b['wall']:.0f} / {b['cpu']:.0f} |" for b in m["batch_rows"]]
    large = m["batch_rows"][1]
    both = lambda k, f: [" / ".join(f"{c[k][0]:{f}}" for c in pair) for pair in zip(m["curves"]["without"],
                                                                                   m["curves"]["with"])]
    columns = [both(k, f) for k, f in (("label_accuracy", ".3f"), ("confidence", ".3f"), ("fd", ".1f"),
                                       ("variety", ".3f"))]
    curve = [f"| {_psi(c['psi'])} | {' | '.join(col[i] for col in columns)} |"
             for i, c in enumerate(m["curves"]["with"])]
    sampling = [f"| {_psi(s['psi'])} | {s['statistics']} | {_pm(s, 'fd', '.1f')} | {_pm(s, 'label_accuracy', '.3f')} | "
                f"{s['variety'][0]:.3f} |" for s in m["sampling"]]
    described = nl.join(f"- **{name}**: {text}." for name, text in m["statistics"].items())
    return f"""Class-conditional digits at {m['resolution']}x{m['resolution']}, the `biggan` cpu preset (G and D
width {m['width']}, z {m['z_dim']} in {m['chunks']} chunks, shared embedding {m['shared_dim']}, Adam {m['lr_g']:g} /
{m['lr_d']:g} with betas (0, 0.999), batch {m['batch']}), {m['steps']} steps per training run, seed 0; the last two
rows are one run, sampled from G and from its EMA. Training time is wall-clock and CPU seconds of one process (on a
shared machine the wall time is inflated; the CPU time is what dedicated cores would take). Metrics from the
digits classifier (held-out accuracy {m['judge_accuracy']:.3f}): Fréchet distance of its features to the training
images, classes covered (of 10), and the share of samples classified as the class they were generated for;
{m['n']} samples per draw (labels 0-9 in turn), mean ± std over {m['draws']} draws of the same trained G. One
training seed per run: differences smaller than the seed-to-seed spread (not measured here) are noise.

| model | train s (wall / CPU) | FD | classes | requested class |
|---|---|---|---|---|
{nl.join(rows)}

**Batch size at an equal image budget**: the cpu preset against 4x the batch for a quarter of the steps,
by gradient accumulation (4 micro-batches of {large['micro']} per update; batch norm sees each micro-batch on its
own), both sampled from the EMA of G (for the large batch: decay {large['ema_beta']:.4f} from step
{large['ema_start']}, the same half-life in images):

| batch | steps | images | FD | requested class | train s (wall / CPU) |
|---|---|---|---|---|---|
{nl.join(batch_rows)}

**Truncation, without / with orthogonal regularisation** (BigGAN's stated purpose for it: a G that stays good
under truncation). The models of the ladder's third and fourth rows, which differ only in orthogonal
regularisation, both sampled from their EMA (decay {m['ema_beta']:g} from step {m['ema_start']}) with z resampled
to [-psi, psi] and standing statistics measured for each psi; each cell "without / with", mean over {m['draws']}
draws: share of the requested class, mean classifier confidence, FD, and the variety within a class (mean
per-pixel std across one class's images; real held-out digits: {m['real_variety']:.3f}).

| psi | requested class | confidence | FD | variety |
|---|---|---|---|---|
{nl.join(curve)}

**Which batch-norm statistics to sample with**: the cpu preset's EMA G (orthogonal regularisation on), the same
weights normalised three ways:
{described}

| psi | statistics | FD | requested class | variety |
|---|---|---|---|---|
{nl.join(sampling)}"""

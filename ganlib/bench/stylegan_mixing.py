"""StyleGAN on shapes: what coarse and fine styles control, with and without mixing regularisation."""

from __future__ import annotations

import torch

from .. import data as datasets
from .. import metrics, models, recipes


def bench_stylegan_mixing(quick: bool = False) -> str:
    from ..files import cache_dir

    steps = 20 if quick else recipes.preset("stylegan", "cpu")["train"]["steps"]
    n = 100 if quick else 1000
    runs = {}
    for name, mixing in (("with mixing regularisation", 0.9), ("without mixing regularisation", 0.0)):
        run_dir = cache_dir() / "bench" / f"stylegan-shapes32-mixing{mixing:g}" / ("quick" if quick else "full")
        t = recipes.make_trainer("stylegan", profile="cpu", device="cpu", run_dir=run_dir, steps=steps,
                                 style_mixing=mixing)
        if (run_dir / "checkpoint.pt").is_file():  # a stopped benchmark continues where it stopped
            t.load_checkpoint()
        t.train()
        runs[name] = t
    res = next(iter(runs.values())).data.resolution
    judge = metrics.judge_for("shapes", res)
    real = datasets.load("shapes", resolution=res, split="test")
    floor = judge.score(real.batch(torch.arange(min(n, len(real))))[0])
    quality = [f"| real held-out images | - | {floor['shape_ok']:.3f} | {floor['recognisable']:.3f} | "
               f"{floor['classes']} | {floor['fd']:.1f} | - | - |"]
    shares = []
    for name, t in runs.items():
        G = t.G_ema.eval()
        s = judge.score(models.sample(G, n, seed=1)[0])
        ppl = [metrics.perceptual_path_length(G, judge, space, n=n // 2) for space in ("z", "w")]
        quality.append(f"| StyleGAN2 {name} | {t.elapsed:.0f} | {s['shape_ok']:.3f} | {s['recognisable']:.3f} | "
                       f"{s['classes']} | {s['fd']:.1f} | {ppl[0]:.1f} | {ppl[1]:.1f} |")
        for k in range(2, G.num_ws, 2):
            m = metrics.mixing_shares(G, judge, k, n=n, seed=1)
            shares.append(f"| {name} | {k} | " + " | ".join(f"{m[f]['coarse']:.2f} / {m[f]['fine']:.2f}"
                                                            for f in metrics.FACTORS) + " |")
    t = next(iter(runs.values()))
    return f"""The `stylegan` cpu preset (G: w {t.G.w_dim}, {len(t.G.mapping.fcs)} mapping layers, {t.G.num_ws} ws;
batch {t.cfg.batch_size}, {t.step} steps) on shapes at {res}x{res}, trained twice, with style-mixing regularisation
(probability 0.9) and without; everything else equal. Scores on {n} samples of G's EMA from the shapes judge
(held-out accuracy {judge.test_accuracy:.3f}): *shape recognised* (the most likely shape, colours summed out,
outweighs the other shapes and "no shape" together), *recognisable* (shape and colour both, the colour also in
the dataset's palette), (shape, colour) combinations covered of 18, Fréchet distance of its features;
perceptual path length (PPL) with its features, {n // 2} paths, in Z (slerp) and W (lerp). Training seconds are
wall time on whatever else the machine was doing; compare them only within one run of the benchmark on an idle
machine.

| model | train s | shape recognised | recognisable | covered | FD | PPL in Z | PPL in W |
|---|---|---|---|---|---|---|---|
{chr(10).join(quality)}

Style mixing at each crossover k (ws rows 0..k-1 from latent A, the rest from B), {n} pairs: for each factor, the
share of mixed images whose factor is A's / B's, over the pairs where A and B differ in it (position: whose
centroid is nearer).

| model | crossover | {' | '.join(metrics.FACTORS)} |
|---|---|{'---|' * len(metrics.FACTORS)}
{chr(10).join(shares)}"""

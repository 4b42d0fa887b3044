"""StyleGAN on shapes: what coarse and fine styles control, with and without mixing regularisation, over seeds.

Each (mixing probability, seed) is one training run of the `stylegan` cpu preset, as
``python -m gancourse train stylegan --profile cpu --seed S --set style_mixing=P`` trains it, in a process of its own
with one thread, `PROCESSES` at a time. Runs checkpoint into the cache, so a stopped benchmark continues where it
stopped. Besides the judge's scores and the known-factor shares, each run is scored with the StyleGAN paper's
measure of mixing (Table 2): the Fréchet distance of images whose ws are split among 1 to 4 latents.
"""

from __future__ import annotations

import math
import statistics

import torch

from ganlib.models.stylegan import broadcast

from .. import evaluation, recipes

TITLE = "StyleGAN on shapes: coarse and fine styles, with and without mixing regularisation"

MIXINGS = (0.9, 0.0)  # style-mixing probabilities compared (StyleGAN's 0.9, and off)
SEEDS = (0, 1, 2)  # training seeds
LATENTS = (1, 2, 3, 4)  # numbers of latents mixed per image (StyleGAN Table 2)
PROCESSES = 2  # runs trained at a time, each in a process of one thread
DIVERGED_BELOW = 0.5  # a run whose final G_ema recognises fewer shapes than this share has diverged


def model_name(mixing: float) -> str:
    return "with mixing regularisation" if mixing > 0 else "without mixing regularisation"


def mix_latents(ws: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Style mixing of k latents at random crossovers, per sample (StyleGAN Table 2): ws [k, N, num_ws, w_dim]
    -> [N, num_ws, w_dim]. Each sample draws k - 1 distinct crossovers uniformly from [1, num_ws); the rows
    before the first read latent 0, those between the first and the second latent 1, and so on, so every
    latent drives at least one row. k = 1 returns ws[0]."""
    k, n, num_ws, _ = ws.shape
    assert 1 <= k <= num_ws, f"can mix 1 to {num_ws} latents, got {k}"
    cuts = torch.rand(n, num_ws - 1, generator=generator).argsort(dim=1)[:, : k - 1] + 1  # [N, k-1], distinct
    rows = torch.arange(num_ws)
    source = (cuts[:, :, None] <= rows).sum(dim=1).to(ws.device)  # [N, num_ws]: the latent each row reads
    return ws[source, torch.arange(n, device=ws.device)[:, None], rows.to(ws.device)[None]]


@torch.no_grad()
def mixed_latent_images(G, n: int, k: int, seed: int = 0, batch: int = 250) -> torch.Tensor:
    """n images [n, C, R, R] (on the CPU, G's constant noise) each generated from k latents mixed at random
    crossovers (`mix_latents`), deterministic given `seed`."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(k, n, G.z_dim, generator=g)
    ws = torch.stack([broadcast(G.mapping(zi), G.num_ws) for zi in z.to(next(G.parameters()).device)])
    mixed = mix_latents(ws, g)  # [n, num_ws, w_dim]
    return torch.cat([G.synthesis(chunk, noise_mode="const").cpu() for chunk in mixed.split(batch)])


def stylegan_trainer(quick: bool, mixing: float, seed: int, steps: int | None = None):
    """The cpu preset with style-mixing probability `mixing` and `seed` (20 steps when `quick`, `steps` when
    given), as the command line builds it (the same initial weights), checkpointing into the cache."""
    from ganlib.env import seed_everything

    run_dir = evaluation.cache_dir() / "bench" / f"stylegan-shapes32-mixing{mixing:g}-seed{seed}"
    run_dir = run_dir / ("quick" if quick else "full")
    steps = steps or (20 if quick else recipes.preset("stylegan", "cpu")["train"]["steps"])
    seed_everything(seed)  # the networks' initial weights, as the command line's --seed
    return recipes.make_trainer("stylegan", profile="cpu", device="cpu", run_dir=run_dir, steps=steps, seed=seed,
                                style_mixing=mixing)


def _run(quick: bool, mixing: float, seed: int, steps: int | None) -> dict:
    """Train one run (resuming its checkpoint) in one thread and measure its G_ema."""
    torch.set_num_threads(1)
    t = stylegan_trainer(quick, mixing, seed, steps)
    if (t.run_dir / "checkpoint.pt").is_file():  # a stopped benchmark continues where it stopped
        t.load_checkpoint()
    t.train(progress=False)
    n = 100 if quick else 1000
    G = t.G_ema.eval()
    judge = evaluation.judge_for("shapes", t.data.resolution)
    score = judge.score(G.sample(n, seed=1)[0])
    fd_latents = [judge.score(mixed_latent_images(G, n, k, seed=2))["fd"] for k in LATENTS]
    shares = {str(c): {f: {side: s[f][side] for side in ("coarse", "fine")} for f in evaluation.FACTORS}
              for c in range(2, G.num_ws, 2) for s in [evaluation.mixing_shares(G, judge, c, n=n, seed=1)]}
    return {"mixing": mixing, "seed": seed, "steps": t.step, "train_s": round(t.elapsed, 1),
            "model": {"w_dim": G.w_dim, "mapping_layers": len(G.mapping.fcs), "num_ws": G.num_ws,
                      "batch": t.cfg.batch_size},
            "score": {key: score[key] for key in ("shape_ok", "recognisable", "classes", "fd")},
            "ppl_z": evaluation.perceptual_path_length(G, judge, "z", n=n // 2),
            "ppl_w": evaluation.perceptual_path_length(G, judge, "w", n=n // 2),
            "fd_latents": fd_latents, "shares": shares}


def measure(quick: bool = False, seeds: tuple[int, ...] = SEEDS, steps: int | None = None) -> dict:
    """Train and score every (mixing, seed) run. `seeds` and `steps` (default: the preset's) only narrow the
    benchmark when time is short, e.g. to report the checkpoints a stopped benchmark left; the section says so."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from ganlib.data import load

    jobs = [(m, s) for s in seeds for m in MIXINGS]  # seed by seed, so that the first seeds finish first
    with ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = list(pool.map(_run, [quick] * len(jobs), [m for m, _ in jobs], [s for _, s in jobs],
                             [steps] * len(jobs)))
    preset = recipes.preset("stylegan", "cpu")
    res = preset["resolution"]
    judge = evaluation.judge_for("shapes", res)
    n = 100 if quick else 1000
    real = load("shapes", resolution=res, split="test")
    floor = judge.score(real.batch(torch.arange(min(n, len(real))))[0])
    return {"n": n, "resolution": res, "judge_accuracy": judge.test_accuracy, "latents": list(LATENTS),
            "real": {key: floor[key] for key in ("shape_ok", "recognisable", "classes", "fd")},
            "diverged_below": DIVERGED_BELOW, "processes": PROCESSES, "planned_seeds": list(SEEDS),
            "preset_steps": 20 if quick else preset["train"]["steps"], "runs": runs}


def spread(values: list[float], digits: int = 1) -> str:
    """'mean ± std' (the sample standard deviation over seeds), the mean alone for one value, '-' for none."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def seeds_count(k: int) -> str:
    return f"{k} seed" + ("" if k == 1 else "s")


def report(measured: dict) -> str:
    runs, latents, n = measured["runs"], measured["latents"], measured["n"]
    mixings = list(dict.fromkeys(r["mixing"] for r in runs))
    seeds = sorted({r["seed"] for r in runs})
    diverged = [r for r in runs if r["score"]["shape_ok"] < measured["diverged_below"]]
    kept = {m: [r for r in runs if r["mixing"] == m and r not in diverged] for m in mixings}
    p, real = runs[0]["model"], measured["real"]
    steps = min(r["steps"] for r in runs)
    steps_text = (f"{steps} steps" if steps == measured["preset_steps"] else
                  f"**stopped at step {steps} of the preset's {measured['preset_steps']}**")

    quality = [f"| real held-out images | - | - | - | {real['shape_ok']:.3f} | {real['recognisable']:.3f} | "
               f"{real['classes']} | {real['fd']:.1f} | - | - |"]
    fds = []
    for r in runs:
        s, flag = r["score"], " (diverged)" if r in diverged else ""
        quality.append(f"| {model_name(r['mixing'])}{flag} | {r['seed']} | {r['steps']} | {r['train_s']:.0f} | "
                       f"{s['shape_ok']:.3f} | "
                       f"{s['recognisable']:.3f} | {s['classes']} | {s['fd']:.1f} | {r['ppl_z']:.0f} | "
                       f"{r['ppl_w']:.0f} |")
        fds.append(f"| {model_name(r['mixing'])}{flag} | {r['seed']} | "
                   + " | ".join(f"{fd:.1f}" for fd in r["fd_latents"]) + " |")
    for m in mixings:
        k = kept[m]
        quality.append(f"| **{model_name(m)}, mean ± std** | {seeds_count(len(k))} | - | - | "
                       f"{spread([r['score']['shape_ok'] for r in k], 3)} | "
                       f"{spread([r['score']['recognisable'] for r in k], 3)} | "
                       f"{spread([r['score']['classes'] for r in k])} | {spread([r['score']['fd'] for r in k])} | "
                       f"{spread([r['ppl_z'] for r in k], 0)} | {spread([r['ppl_w'] for r in k], 0)} |")
        fds.append(f"| **{model_name(m)}, mean ± std** | {seeds_count(len(k))} | "
                   + " | ".join(spread([r["fd_latents"][i] for r in k]) for i in range(len(latents))) + " |")

    crossovers = list(runs[0]["shares"])
    factors = list(runs[0]["shares"][crossovers[0]])
    shares = [f"| {model_name(m)} | {c} | " + " | ".join(
        f"{spread([r['shares'][c][f]['coarse'] for r in kept[m]], 2)} / "
        f"{spread([r['shares'][c][f]['fine'] for r in kept[m]], 2)}" for f in factors) + " |"
        for m in mixings for c in crossovers]

    verdict = []
    if len(mixings) == 2 and all(kept.values()):
        with_, without = mixings
        paired = [(a, b) for a in kept[with_] for b in kept[without] if a["seed"] == b["seed"]]
        for i, k in enumerate(latents):
            if k == 1:
                continue
            rise = {m: statistics.mean(r["fd_latents"][i] - r["fd_latents"][0] for r in kept[m]) for m in mixings}
            lower = sum(a["fd_latents"][i] < b["fd_latents"][i] for a, b in paired)
            verdict.append(f"- {k} latents: FD {rise[with_]:+.1f} over 1 latent with mixing regularisation, "
                           f"{rise[without]:+.1f} without (means); FD lower with it in {lower} of "
                           f"{seeds_count(len(paired))}")
    verdict_text = ("Over the seeds that did not diverge, the rise of FD from 1 latent to several, and the runs "
                    "compared seed by seed:\n\n" + "\n".join(verdict)
                    if verdict else "Too few runs that did not diverge to compare the two.")
    diverged_text = ("Diverged: " + "; ".join(f"{model_name(r['mixing'])}, seed {r['seed']}" for r in diverged)
                     if diverged else "No run diverged")
    seeds_text = ", ".join(str(s) for s in seeds)
    missing = [s for s in measured["planned_seeds"] if s not in seeds]
    if missing:
        planned = ", ".join(str(s) for s in measured["planned_seeds"])
        names = ", ".join(str(s) for s in missing)
        seeds_text += (f" (of the planned {planned}: the runs of {seeds_count(len(missing)).split()[1]} {names} did "
                       f"not finish in the time this run of the benchmark had)")
    return f"""The `stylegan` cpu preset (G: w {p['w_dim']}, {p['mapping_layers']} mapping layers, {p['num_ws']} ws;
batch {p['batch']}, {steps_text}) on shapes at {measured['resolution']}x{measured['resolution']}, trained with
style-mixing regularisation (probability 0.9) and without (0), everything else equal, with training seeds
{seeds_text}: each run as `python -m gancourse train stylegan --profile cpu --seed S --set style_mixing=P` trains
it. The runs train apart, {measured['processes']} at a time in processes of one thread each. Scores on {n}
samples of G's EMA from the shapes judge (held-out accuracy {measured['judge_accuracy']:.3f}): *shape recognised*
(the most likely shape, colours summed out, outweighs the other shapes and "no shape" together), *recognisable*
(shape and colour both, the colour also in the dataset's palette), (shape, colour) combinations covered of 18,
Fréchet distance (FD) of its features; perceptual path length (PPL) with its features, {n // 2} paths, in Z
(slerp) and W (lerp).
A run counts as **diverged** when its shape-recognised share is below {measured['diverged_below']:g}; it is
listed, marked, and left out of the means. {diverged_text}. Training seconds are wall time on a shared
machine: compare them only within one run of the benchmark.

| model | seed | steps | train s | shape recognised | recognisable | covered | FD | PPL in Z | PPL in W |
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(quality)}

The StyleGAN paper's measure of mixing (Table 2, where it is FID on FFHQ; here the shapes judge's FD, {n}
images per cell): each image's ws are split at random crossovers among 1 to {max(latents)} latents (every latent
drives at least one row of ws; 1 latent is an ordinary sample). In the paper, the FID of images from several
latents rises with their number, and less so the more often training mixed.

| model | seed | {' | '.join(f'FD, {k} latent' + ('s' if k > 1 else '') for k in latents)} |
|---|---|{'---|' * len(latents)}
{chr(10).join(fds)}

{verdict_text}

Style mixing at each crossover c (ws rows 0..c-1 from latent A, the rest from B), {n} pairs: for each factor, the
share of mixed images whose factor is A's / B's, over the pairs where A and B differ in it (position: whose
centroid is nearer); mean ± std over the seeds that did not diverge.

| model | crossover | {' | '.join(factors)} |
|---|---|{'---|' * len(factors)}
{chr(10).join(shares)}"""

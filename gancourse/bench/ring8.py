"""ring8: mode collapse and PacGAN."""

from __future__ import annotations

import statistics

import torch

from ganlib import metrics
from ganlib.train import Trainer

from .. import recipes
from .core import threads


def ring8_trainer(profile: str, seed: int, pack: int) -> Trainer:
    """The `gan` recipe's preset for `profile` with packing degree `pack`, as chapter 01 builds it and as
    `python -m gancourse train gan --profile PROFILE --seed SEED --set pack=PACK` does (same initial weights)."""
    torch.manual_seed(seed)  # the networks' initial weights, as the command line's --seed
    return recipes.make_trainer("gan", profile=profile, device="cpu", seed=seed, pack=pack)


def _ring8_run(profile: str, seed: int, pack: int) -> tuple[dict, float]:
    """One ring8 run of `ring8_trainer` in one thread: (mode_coverage of 2,500 samples, training seconds)."""
    torch.set_num_threads(1)
    t = ring8_trainer(profile, seed, pack)
    t.train(progress=False)
    x, _ = t.sample(2500, seed=100 + seed)
    return metrics.mode_coverage(x, t.data.centres, t.data.std), t.elapsed


TITLE = "Mode collapse on ring8: vanilla GAN against PacGAN2"
SEEDS = range(3)


def measure(quick: bool = False) -> dict:
    """Six runs of the `gan` preset (`smoke` when quick, else `cpu`), vanilla and PacGAN2, three seeds each, in
    processes of one thread: each run's mode coverage of 2,500 samples and training seconds, and the preset."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    profile = "smoke" if quick else "cpu"
    jobs = [(pack, seed) for pack in (1, 2) for seed in SEEDS]
    with ProcessPoolExecutor(threads(), mp_context=multiprocessing.get_context("spawn")) as pool:  # runs apart
        done = list(pool.map(_ring8_run, [profile] * len(jobs), [s for _, s in jobs], [p for p, _ in jobs]))
    p = recipes.preset("gan", profile)
    tr = p["train"]
    return {"profile": profile, "threads": threads(),
            "G": {k: p["G"][k] for k in ("z_dim", "depth", "hidden")}, "D": {k: p["D"][k] for k in ("depth", "hidden")},
            "train": {"betas": list(tr["betas"]), **{k: tr[k] for k in ("lr_g", "lr_d", "batch_size", "steps",
                                                                        "lr_decay_start")}},
            "runs": [{"pack": pack, "seed": seed, "modes": m["modes"], "hq": m["hq"], "reverse_kl": m["reverse_kl"],
                      "seconds": seconds} for (pack, seed), (m, seconds) in zip(jobs, done)]}


def report(measured: dict) -> str:
    runs, g, d, tr, profile = (measured[k] for k in ("runs", "G", "D", "train", "profile"))
    rows = [f"| {'vanilla GAN' if r['pack'] == 1 else 'PacGAN2'} | {r['seed']} | {r['modes']} | {100 * r['hq']:.1f} | "
            f"{r['reverse_kl']:.2f} | {r['seconds']:.0f} |".replace("nan", "-") for r in runs]
    means = {pack: (statistics.mean(r["modes"] for r in runs if r["pack"] == pack),
                    statistics.mean(r["hq"] for r in runs if r["pack"] == pack)) for pack in (1, 2)}
    seeds = len({r["seed"] for r in runs})
    return f"""The `gan` recipe's `{profile}` preset, exactly as chapter 01 runs it (`python -m gancourse train gan
--profile {profile} --seed S`, with `--set pack=2` for PacGAN2). Ring of 8 Gaussians (radius 1, std 0.01), 2,500
samples per run, a sample is high quality (HQ) when it is within 3 std of a mode (the VEEGAN/PacGAN protocol). MLP
G (z {g['z_dim']}, {g['depth']}x{g['hidden']} ReLU) and D ({d['depth']}x{d['hidden']} LeakyReLU), non-saturating
loss, Adam with betas {tuple(tr['betas'])} and learning rates {tr['lr_g']:g} for G, {tr['lr_d']:g} for D, batch
{tr['batch_size']}, {tr['steps']} steps with the rates decaying linearly to 0 after {100 * tr['lr_decay_start']:.0f} %
of them. The only difference between the rows: PacGAN2's D judges pairs of samples (Lin et al. 2018). The six runs
train apart, {measured['threads']} at a time in processes of one thread each.

| model | seed | modes (of 8) | HQ % | reverse KL | train s |
|---|---|---|---|---|---|
{chr(10).join(rows)}

Mean over {seeds} seeds: vanilla GAN {means[1][0]:.1f} modes, {100 * means[1][1]:.1f} % HQ; PacGAN2
**{means[2][0]:.1f} modes, {100 * means[2][1]:.1f} % HQ** (the PacGAN paper, 400 epochs with larger networks:
7.9 modes, 95.6 % HQ)."""

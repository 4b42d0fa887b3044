"""Benchmarks: quality and speed figures that take minutes, written to docs/benchmarks.md.

``python -m ganlib bench [NAME ...]`` runs the named benchmarks (default: all) and replaces their sections of
the benchmarks file, each with the command that produced it, the machine and the date. A chapter adds its
benchmark by registering a function in `BENCHMARKS` that returns the section's markdown body.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from . import data as datasets
from . import metrics, models, recipes
from .files import atomic_write_text
from .losses import d_loss_logistic, g_loss_nonsaturating
from .models import dcgan
from .train import TrainConfig, Trainer

THREADS = 2  # every benchmark runs with this many CPU threads (the course's reference laptop) ...


def threads() -> int:
    """... unless OMP_NUM_THREADS says otherwise (e.g. 1 on a machine shared with other work); the section
    records the count it ran with."""
    explicit = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(explicit) if explicit.isdigit() and int(explicit) > 0 else THREADS

HEADER = """# Benchmarks

Figures that take minutes to measure, produced by `python -m ganlib bench` (sections are replaced one by
one, so each states its own command, machine and date). Timings on shared machines are noisy: where a
claim is a comparison, both sides were measured in the same run, and the ratio is the figure to trust.
"""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads), {device}; "
            f"Python {platform.python_version()}, torch {torch.__version__}")


# ----------------------------------------------------------------------------------------------------------
# DCGAN on digits: ganlib's recipe against a plain PyTorch-tutorial-style DCGAN, same wall time


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


# ----------------------------------------------------------------------------------------------------------
# ring8: mode collapse and PacGAN


def ring8_trainer(profile: str, seed: int, pack: int) -> Trainer:
    """The `gan` recipe's preset for `profile` with packing degree `pack`, as chapter 01 builds it and as
    `python -m ganlib train gan --profile PROFILE --seed SEED --set pack=PACK` does (same initial weights)."""
    torch.manual_seed(seed)  # the networks' initial weights, as the command line's --seed
    return recipes.make_trainer("gan", profile=profile, device="cpu", seed=seed, pack=pack)


def _ring8_run(profile: str, seed: int, pack: int) -> tuple[dict, float]:
    """One ring8 run of `ring8_trainer` in one thread: (mode_coverage of 2,500 samples, training seconds)."""
    torch.set_num_threads(1)
    t = ring8_trainer(profile, seed, pack)
    t.train(progress=False)
    x, _ = t.sample(2500, seed=100 + seed)
    return metrics.mode_coverage(x, t.data.centres, t.data.std), t.elapsed


def bench_ring8(quick: bool = False) -> str:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    profile = "smoke" if quick else "cpu"
    seeds = range(3)
    jobs = [(pack, seed) for pack in (1, 2) for seed in seeds]
    with ProcessPoolExecutor(threads(), mp_context=multiprocessing.get_context("spawn")) as pool:  # runs apart
        done = list(pool.map(_ring8_run, [profile] * len(jobs), [s for _, s in jobs], [p for p, _ in jobs]))
    rows, means = [], {}
    for (pack, seed), (m, seconds) in zip(jobs, done):
        rows.append(f"| {'vanilla GAN' if pack == 1 else 'PacGAN2'} | {seed} | {m['modes']} | "
                    f"{100 * m['hq']:.1f} | {m['reverse_kl']:.2f} | {seconds:.0f} |".replace("nan", "-"))
    for pack in (1, 2):
        results = [m for (p, _), (m, _) in zip(jobs, done) if p == pack]
        means[pack] = (statistics.mean(m["modes"] for m in results), statistics.mean(m["hq"] for m in results))
    p = recipes.preset("gan", profile)
    g, d, tr = p["G"], p["D"], p["train"]
    return f"""The `gan` recipe's `{profile}` preset, exactly as chapter 01 runs it (`python -m ganlib train gan
--profile {profile} --seed S`, with `--set pack=2` for PacGAN2). Ring of 8 Gaussians (radius 1, std 0.01), 2,500
samples per run, a sample is high quality (HQ) when it is within 3 std of a mode (the VEEGAN/PacGAN protocol). MLP
G (z {g['z_dim']}, {g['depth']}x{g['hidden']} ReLU) and D ({d['depth']}x{d['hidden']} LeakyReLU), non-saturating
loss, Adam with betas {tuple(tr['betas'])} and learning rates {tr['lr_g']:g} for G, {tr['lr_d']:g} for D, batch
{tr['batch_size']}, {tr['steps']} steps with the rates decaying linearly to 0 after {100 * tr['lr_decay_start']:.0f} %
of them. The only difference between the rows: PacGAN2's D judges pairs of samples (Lin et al. 2018). The six runs
train apart, {threads()} at a time in processes of one thread each.

| model | seed | modes (of 8) | HQ % | reverse KL | train s |
|---|---|---|---|---|---|
{chr(10).join(rows)}

Mean over {len(seeds)} seeds: vanilla GAN {means[1][0]:.1f} modes, {100 * means[1][1]:.1f} % HQ; PacGAN2
**{means[2][0]:.1f} modes, {100 * means[2][1]:.1f} % HQ** (the PacGAN paper, 400 epochs with larger networks:
7.9 modes, 95.6 % HQ)."""


# ----------------------------------------------------------------------------------------------------------
# Throughput: ganlib's Trainer against a plain loop doing the same work


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


def bench_throughput(quick: bool = False) -> str:
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
    speed = {name: chunk * rounds * batch / sum(s) for name, s in seconds.items()}  # images per second

    def ratio(name: str) -> str:  # ganlib's speed over this loop's, and the spread of the per-round ratios
        rs = [o / p for o, p in zip(seconds[name], seconds["ganlib"])]
        return (f"{speed['ganlib'] / speed[name]:.2f}",
                f"per-round ratios: median {statistics.median(rs):.2f}, range {min(rs):.2f} to {max(rs):.2f}")

    same, tutorial = ratio("fresh"), ratio("tutorial")
    return f"""The `dcgan` cpu preset's networks on digits {preset['resolution']}x{preset['resolution']}, batch {batch},
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


# ----------------------------------------------------------------------------------------------------------
# BigGAN: what each trick buys, batch size at an equal image budget, the truncation curve


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
        return _conditional_scores(lambda labels, seed: t.sample(len(labels), labels, seed=seed, ema=ema)[0],
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
        x, _ = full.sample(n, labels, seed=0, truncation=psi)
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


# ----------------------------------------------------------------------------------------------------------
# Grading: a class's submissions of chapter 01


def _edited(path: Path, old: str, new: str) -> str:
    """A notebook's JSON text with `old` replaced by `new` in the one cell that contains it."""
    import json

    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if old in "".join(c["source"])]
    assert len(cells) == 1, f"{old!r} is in {len(cells)} cells of {path}"
    cells[0]["source"] = "".join(cells[0]["source"]).replace(old, new)
    return json.dumps(nb)


_ATTACKS = {  # what a hostile notebook does when the grader defines its classes (as in tests/test_grading_attacks.py)
    "replaces the checks with ones that pass": "import ganlib.checks as c\nfrom ganlib.checks import CheckResult\n"
        "for k in list(c.CHECKS):\n    c.CHECKS[k] = lambda fn, k=k: CheckResult(k, True, 'correct.')",
    "forges a results file, then exits": "import json, os\nopen('events.jsonl', 'w').write(json.dumps("
        "{'event': 'result', 'passed': True}))\nos._exit(0)",
    "starts a detached daemon": "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', "
        "'import time; time.sleep(60)'], start_new_session=True)",
    "kills every process it can see": "import os, signal\nfor p in os.listdir('/proc'):\n    if p.isdigit() and "
        "int(p) != os.getpid():\n        try:\n            os.kill(int(p), signal.SIGKILL)\n"
        "        except OSError:\n            pass",
}


def _with_attack(path: Path, code: str) -> str:
    """The exercise notebook (every answer wrong) with `code` run in a class body when the grader defines it."""
    import json

    nb = json.loads(path.read_text())
    body = "def _attack():\n" + "".join(f"    {line}\n" for line in code.splitlines())
    body += "\nclass _Run:\n    _attack()\n"
    nb["cells"].insert(1, {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                           "source": body})
    return json.dumps(nb)


def bench_grading(quick: bool = False) -> str:
    import subprocess
    import tempfile

    from . import grading

    root = Path(__file__).resolve().parents[1]
    solution, exercise = root / "solutions" / "01_vanilla_gan.ipynb", root / "exercises" / "01_vanilla_gan.ipynb"
    kinds = {  # kind: (notebook text, how many of a class of 30)
        "solution": (solution.read_text(), 12),
        "untouched exercise": (exercise.read_text(), 8),
        "generator loss with the wrong sign": (_edited(solution, "return F.softplus(-fake_logits)",
                                                       "return -F.softplus(-fake_logits)"), 8),
        "endless loop in discriminator_loss": (_edited(exercise, 'raise NotImplementedError("discriminator_loss',
                                                       'while True: pass  # ("'), 2),
    }
    attacks = {f"attack: {what}": (_with_attack(exercise, code), 1) for what, code in _ATTACKS.items()}
    jobs, timeout = 2, grading.DEFAULT_TIMEOUT
    fresh = []
    for _ in range(1 if quick else 3):  # what a new Python process per submission would pay before any check
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import ganlib.checks"], check=True)
        fresh.append(time.perf_counter() - start)

    def grade_class(kinds: dict) -> tuple[list, float, str, str]:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "submissions"
            folder.mkdir()
            names = {}
            for k, (kind, (text, count)) in enumerate(kinds.items()):
                names[kind] = f"k{k:02d}"
                for j in range(1 if quick else count):
                    (folder / f"k{k:02d}-{j:02d}.ipynb").write_text(text)
            log = []
            start = time.perf_counter()
            graded = grading.grade(folder, Path(tmp) / "grades.csv", timeout=timeout, jobs=jobs, log=log.append)
            wall = time.perf_counter() - start
        rows = []
        for kind in kinds:
            mine = [g for g in graded if g.student.startswith(names[kind])]
            rows.append(f"| {kind} | {len(mine)} | {statistics.median(g.seconds for g in mine):.2f} | "
                        f"{statistics.mean(g.total for g in mine):.0f} of {len(mine[0].outcomes)} | {mine[0].status} |")
        confinement = next((line.split(": ", 1)[1] for line in log if line.startswith("confinement: ")), "?")
        return graded, wall, "\n".join(rows), confinement

    graded, wall, rows, confinement = grade_class(kinds)
    with_attacks, attacked_wall, attacked_rows, _ = grade_class({**kinds, **attacks})
    ordinary = [g.seconds for g in graded if not g.student.startswith("k03")]
    marks = lambda results: sorted((g.student, g.total, g.status) for g in results if g.student < "k04")
    same = "the same as above" if marks(with_attacks) == marks(graded) else "NOT the same as above"
    return f"""`python -m ganlib grade` on a class of {len(graded)} chapter 01 notebooks, `--jobs {jobs}`,
`--timeout {timeout:g}` (each exercise gets an equal share of the time left). Seconds per submission are
measured in its checker, from the start of the submission's confined process to its end. Confinement:
{confinement}.

| submission | count | s each (median) | points | status |
|---|---|---|---|---|
{rows}

Wall time for the whole class: **{wall:.1f} s** (including the grading server's start, which imports torch
once). The {len(ordinary)} submissions without a loop took {sum(ordinary):.1f} s in all; an endless
loop costs its exercise's share of the time limit and the other exercises are still graded. For comparison, a
fresh Python process that only imports torch and the checks takes {statistics.median(fresh):.1f} s (median of
{len(fresh)}): {len(graded)} of them would cost {len(graded) * statistics.median(fresh):.0f} s of CPU before the
first check.

The same class with {len(with_attacks) - len(graded)} hostile submissions added (each the untouched exercise,
so every answer is wrong, plus the attack): wall time **{attacked_wall:.1f} s**; the other submissions' marks
and statuses are {same}.

| submission | count | s each (median) | points | status |
|---|---|---|---|---|
{attacked_rows}"""


# ----------------------------------------------------------------------------------------------------------
# Several processes: torchrun with 1 and 2 processes on the CPU (gloo), and accumulation on one


def _torchrun_images_per_second(folder: Path, processes: int, steps: int, accumulate: int = 1) -> float:
    """Train the dcgan cpu preset with `python -m torch.distributed.run`; images/s over all processes."""
    import shutil
    import subprocess

    from .train import load_checkpoint_file

    shutil.rmtree(folder, ignore_errors=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "ganlib", "train", "dcgan", "--profile", "cpu", "--device", "cpu", "--steps", str(steps),
               "--accumulate", str(accumulate), "--out", str(folder)]
    env = dict(os.environ, OMP_NUM_THREADS="1")  # one thread per process
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    state = load_checkpoint_file(folder)
    return state["images_seen"] / state["elapsed"]


def bench_ddp_throughput(quick: bool = False) -> str:
    import tempfile

    steps, repeats = (10, 1) if quick else (300, 2)
    load_before = os.getloadavg()[0]
    setups = [("1 process", 1, 1), ("2 processes (torchrun, gloo)", 2, 1), ("1 process, --accumulate 2", 1, 2)]
    runs: dict[str, list[float]] = {name: [] for name, _, _ in setups}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):  # interleaved, so that drifts in machine load hit all alike
            for name, processes, accumulate in setups:
                runs[name].append(_torchrun_images_per_second(Path(tmp) / "run", processes, steps, accumulate))
    load_after = os.getloadavg()[0]
    batch = recipes.preset("dcgan", "cpu")["train"]["batch_size"]
    median = {name: statistics.median(values) for name, values in runs.items()}
    base = median[setups[0][0]]
    rows = [f"| {name} | {batch} | {batch * processes * accumulate} | {median[name]:.0f} | {median[name] / base:.2f} "
            f"| {_join(runs[name])} |" for name, processes, accumulate in setups]
    return f"""`python -m torch.distributed.run --standalone --nproc_per_node=N -m ganlib train dcgan --profile cpu
--device cpu --steps {steps} [--accumulate 2]` (the `dcgan` cpu preset: digits 16x16, EMA, lazy R1), one CPU
thread per process (OMP_NUM_THREADS=1), processes talking through gloo; images per second over all processes, from the
checkpoint's images seen and training time (start-up, sample grids and checkpoints excluded); {repeats} run(s)
of each, interleaved, median. The machine's load average was {load_before:.1f} before and {load_after:.1f} after
(other work shares its cores, so compare the rows with each other rather than with other sections). No GPU was
available for this measurement: on GPUs the processes use NCCL, and these figures say nothing about GPU
scaling.

| setup | batch per process | global batch | images/s | ratio to 1 process | runs |
|---|---|---|---|---|---|
{chr(10).join(rows)}

Two processes deliver **{median[setups[1][0]] / base:.2f}x** the images per second of one (2.00x
would be perfect scaling). Accumulating two micro-batches in one process trains with the global batch of two
processes at {median[setups[2][0]] / base:.2f}x the images per second of one: it saves memory, not time."""


def _join(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


# ----------------------------------------------------------------------------------------------------------
# PGGAN: progressive growing against training at the final resolution from the start


PGGAN_THRESHOLDS = (0.5, 0.6, 0.7, 0.8)  # shape_ok levels whose first crossing at the final resolution is timed
PGGAN_TARGET = 0.8  # the headline's "equal quality": about where the fixed run ends the chapter's budget
PGGAN_RESULTS = Path(__file__).parent / "results" / "pggan_growing.json"  # what chapter 02 plots


def pggan_race(profile: str, device: str, resolution: int, every: int, n_eval: int, budget: float = 1.5) -> dict:
    """Progressive growing against training at `resolution` from the start, in turns of `every` steps each
    (so that changes in machine load hit both alike), with the judge's figures after every turn (not counted as
    training time). A run stops once its shape_ok reaches the highest threshold at the final resolution, or at
    `budget` times the preset's image budget scaled to `resolution`. Returns each run's curve of
    [train seconds, images, resolution, alpha, shape_ok, recognisable]."""
    from .recipes.pggan import steps_at

    preset = recipes.preset("pggan", profile)
    steps = round(budget * steps_at(preset, resolution))
    judge = metrics.judge_for("shapes", resolution)
    runs = {}
    for name, start in (("progressive", preset["trainer"]["growth"].get("start_resolution", 4)),
                        ("fixed", resolution)):
        torch.manual_seed(0)
        growth = dict(preset["trainer"]["growth"], start_resolution=start)
        runs[name] = recipes.make_trainer("pggan", profile=profile, device=device, resolution=resolution,
                                          steps=steps, preset_overrides={"trainer": {"growth": growth}})
    curves = {name: [] for name in runs}
    active = list(runs)
    while active:
        for name in list(active):
            t = runs[name]
            t.train(min(t.step + every, steps), progress=False)
            m = judge.score(t.sample(n_eval, seed=1)[0])
            curves[name].append([round(t.elapsed, 2), t.images_seen, t.resolution, round(t.alpha, 3),
                                 round(m["shape_ok"], 4), round(m["recognisable"], 4)])
            at_final = t.resolution == resolution and t.alpha == 1.0
            if t.step >= steps or (at_final and m["shape_ok"] >= max(PGGAN_THRESHOLDS)):
                active.remove(name)
    return {"resolution": resolution, "steps": steps, "batch": preset["train"]["batch_size"], "curves": curves}


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
                to_threshold={str(th): [time_to(curves[n], th, res) for n in ("progressive", "fixed")]
                              for th in PGGAN_THRESHOLDS})


def bench_pggan_growing(quick: bool = False) -> str:
    import json

    profile = "smoke" if quick else ("gpu" if torch.cuda.is_available() else "cpu")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    preset = recipes.preset("pggan", profile)
    final = preset["resolution"]
    measured = {"profile": profile, "date": datetime.date.today().isoformat(), "machine": machine(),
                "n_eval": 100 if quick else 500, "load_average": [os.getloadavg()[0]],
                "thresholds": list(PGGAN_THRESHOLDS), "target": PGGAN_TARGET, "races": []}
    for r in (r for r in (final // 4, final // 2, final) if r >= 8):  # the smaller first: they cost less
        race = pggan_race(profile, device, r, every=max(1, preset["train"]["steps"] // 40), n_eval=measured["n_eval"])
        measured["races"].append(summarise_race(race))
        print(f"pggan-growing: {r}x{r} done", file=sys.stderr, flush=True)
        if not quick:  # after every resolution, so that a stopped benchmark keeps what it measured
            PGGAN_RESULTS.parent.mkdir(exist_ok=True)
            atomic_write_text(json.dumps(measured, indent=1) + "\n", PGGAN_RESULTS)
    measured["load_average"].append(os.getloadavg()[0])
    return pggan_section(measured)


def pggan_section(measured: dict) -> str:
    """The benchmark's markdown from its figures (what `bench_pggan_growing` writes to PGGAN_RESULTS)."""
    preset = recipes.preset("pggan", measured["profile"])
    thresholds, n_eval = measured["thresholds"], measured["n_eval"]
    rows = []
    for race in measured["races"]:
        res, curves = race["resolution"], race["curves"]
        real = metrics.judge_for("shapes", res).real_score(n_eval, res)["shape_ok"]
        cells = []
        for th in thresholds:
            tp, tf = race["to_threshold"][str(th)]
            last = curves["fixed"][-1][0]
            cells.append("-" if tp is None else (f"{tp:.0f} / {tf:.0f} (**{tf / tp:.2f}x**)" if tf is not None
                                                 else f"{tp:.0f} / not by {last:.0f} (> {last / tp:.2f}x)"))
        ends = " / ".join(f"{curves[n][-1][4]:.2f}" for n in ("progressive", "fixed"))
        rows.append(f"| {res}x{res} | {race['steps'] * race['batch'] / 1000:g}k | {race['per_image']:.2f}x | "
                    f"{' | '.join(cells)} | {ends} | {real:.2f} |")
    growth, train = preset["trainer"]["growth"], preset["train"]
    load = " and ".join(f"{x:.1f}" for x in measured["load_average"])
    header = " | ".join(f"shape_ok >= {th}" for th in thresholds)
    return f"""The `pggan` recipe's `{measured['profile']}` preset on `shapes`, grown to each final resolution in the
table: the same networks, loss (WGAN-GP, lambda 10, drift 0.001), optimiser (Adam {train['lr_g']:g}, betas
{tuple(train['betas'])}) and batch ({train['batch_size']}) for both runs; the progressive one grows from 4x4
({growth['stable_kimg']:g}k images stable, then {growth['fade_kimg']:g}k fading in, per doubling), the fixed one trains
at the final resolution from the first step. The two runs of a resolution train in turns of a hundred steps in one
process (so that changes in machine load hit both alike), each until its shape_ok (the share of samples whose shape
class the shapes judge recognises, on {n_eval} samples of the EMA generator after each turn) reaches
{max(thresholds)} at the final resolution, or until the image budget in the table. Training seconds exclude the
measurements. The machine was shared with other work (load average {load} at the start and the end): compare the
two runs of a row, not seconds across rows or sections. Figures for chapter 02: `ganlib/results/pggan_growing.json`.

Per image: the fixed run's seconds over the progressive run's for the same images. To quality: training seconds
until shape_ok first reaches the threshold at the final resolution (fully faded in), progressive / fixed
(speed-up). Last column: real held-out images at that resolution.

| final resolution | budget | per image | {header} | last shape_ok (prog. / fixed) | real |
|---|---|---|{'---|' * len(thresholds)}---|---|
{chr(10).join(rows)}"""


# ----------------------------------------------------------------------------------------------------------
# StyleGAN on shapes: what coarse and fine styles control, with and without mixing regularisation


def bench_stylegan_mixing(quick: bool = False) -> str:
    from .files import cache_dir
    from .recipes import stylegan as sgr

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
        s = judge.score(sgr.sample(G, n, seed=1)[0])
        ppl = [sgr.perceptual_path_length(G, judge, space, n=n // 2) for space in ("z", "w")]
        quality.append(f"| StyleGAN2 {name} | {t.elapsed:.0f} | {s['shape_ok']:.3f} | {s['recognisable']:.3f} | "
                       f"{s['classes']} | {s['fd']:.1f} | {ppl[0]:.1f} | {ppl[1]:.1f} |")
        for k in range(2, G.num_ws, 2):
            m = sgr.mixing_shares(G, judge, k, n=n, seed=1)
            shares.append(f"| {name} | {k} | " + " | ".join(f"{m[f]['coarse']:.2f} / {m[f]['fine']:.2f}"
                                                            for f in sgr.FACTORS) + " |")
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

| model | crossover | {' | '.join(sgr.FACTORS)} |
|---|---|{'---|' * len(sgr.FACTORS)}
{chr(10).join(shares)}"""


BENCHMARKS: dict[str, tuple[str, Callable[[bool], str]]] = {
    "dcgan-digits": ("DCGAN on digits, cpu profile: ganlib against a tutorial-style DCGAN", bench_dcgan_digits),
    "ring8": ("Mode collapse on ring8: vanilla GAN against PacGAN2", bench_ring8),
    "throughput": ("Training-loop throughput: ganlib against a plain loop", bench_throughput),
    "grading": ("Grading a class of 30 submissions", bench_grading),
    "biggan-tricks": ("BigGAN on digits, cpu profile: each trick, batch size, truncation", bench_biggan_tricks),
    "ddp-throughput": ("Several processes: torchrun on the CPU with 1 and 2 processes", bench_ddp_throughput),
    "pggan-growing": ("PGGAN on shapes: progressive growing against the full resolution from the start",
                      bench_pggan_growing),
    "stylegan-mixing": ("StyleGAN on shapes: coarse and fine styles, with and without mixing regularisation",
                        bench_stylegan_mixing),
}


def update_section(text: str, name: str, body: str) -> str:
    """Replace (or append) the section of benchmark `name` in the benchmarks file's text."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{begin}\n{body}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return text.rstrip() + "\n\n" + block + "\n"


def main(names: list[str], out: str | Path = "docs/benchmarks.md", quick: bool = False) -> None:
    from .errors import GanlibError

    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise GanlibError(f"unknown benchmark(s) {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}.")
    torch.set_num_threads(threads())
    out = Path(out)
    text = out.read_text() if out.is_file() else HEADER
    command = "python -m ganlib bench" + (" --quick" if quick else "")
    if threads() != THREADS:
        command = f"OMP_NUM_THREADS={threads()} {command}"
    from tqdm.auto import tqdm

    names = names or list(BENCHMARKS)
    bar = tqdm(names, desc="benchmarks", unit="section", disable=quick)  # the training runs show bars of their own
    for name in bar:
        title, fn = BENCHMARKS[name]
        bar.set_postfix_str(name)
        print(f"running {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        body = fn(quick)
        stamp = datetime.date.today().isoformat()
        section = (f"## {title}\n\nCommand: `{command} {name}` · {stamp} · {machine()} · "
                   f"{time.perf_counter() - start:.0f} s in all\n\n{body}")
        text = update_section(text, name, section)
        atomic_write_text(text, out)  # after each benchmark, so a long run keeps what it measured
        print(f"{name}: written to {out}", file=sys.stderr)

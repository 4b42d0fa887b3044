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

THREADS = 2  # every benchmark runs with this many CPU threads (the course's reference laptop)

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
    trainer.train(progress=False)
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
from an EMA of G's weights (half-life {trainer.cfg.ema_half_life_kimg} kimg).

| model | train s | FD | classes | confidence |
|---|---|---|---|---|
{table}

ganlib / tutorial FD ratio: **{ratio:.2f}**."""


# ----------------------------------------------------------------------------------------------------------
# ring8: mode collapse and PacGAN


def bench_ring8(quick: bool = False) -> str:
    steps = 200 if quick else 20000
    rows, means = [], {}
    for pack in (1, 2):
        results = []
        for seed in range(3):
            t = recipes.make_trainer("gan", profile="cpu", device="cpu", steps=steps, seed=seed,
                                     preset_overrides={"D": dict(recipes.preset("gan", "cpu")["D"], pack=pack)})
            torch.manual_seed(seed)
            t.train(progress=False)
            x, _ = t.sample(2500, seed=100 + seed)
            m = metrics.mode_coverage(x, t.data.centres, t.data.std)
            results.append((m, t.elapsed))
            rows.append(f"| {'vanilla GAN' if pack == 1 else 'PacGAN2'} | {seed} | {m['modes']} | "
                        f"{100 * m['hq']:.1f} | {m['reverse_kl']:.2f} | {t.elapsed:.0f} |")
        means[pack] = (statistics.mean(r[0]["modes"] for r in results), statistics.mean(r[0]["hq"] for r in results))
    p = recipes.preset("gan", "cpu")
    g, d, tr = p["G"], p["D"], p["train"]
    return f"""Ring of 8 Gaussians (radius 1, std 0.01), 2,500 samples per run, a sample is high quality (HQ) when
it is within 3 std of a mode (the VEEGAN/PacGAN protocol). MLP G (z {g['z_dim']}, {g['depth']}x{g['hidden']} ReLU)
and D ({d['depth']}x{d['hidden']} LeakyReLU), non-saturating loss, Adam {tr['lr_g']:g} (0.5, 0.999), batch
{tr['batch_size']}, {steps} steps with the learning rate decaying linearly to 0 over the second half. The only
difference between the rows: PacGAN2's D judges pairs of samples (Lin et al. 2018).

| model | seed | modes (of 8) | HQ % | reverse KL | train s |
|---|---|---|---|---|---|
{chr(10).join(rows)}

Mean over 3 seeds: vanilla GAN {means[1][0]:.1f} modes, {100 * means[1][1]:.1f} % HQ; PacGAN2 **{means[2][0]:.1f} modes,
{100 * means[2][1]:.1f} % HQ**."""


# ----------------------------------------------------------------------------------------------------------
# Throughput: ganlib's Trainer against a plain loop doing the same work


def plain_loop(G, D, data, steps: int, batch: int, lr: float = 2e-4, seed: int = 0) -> float:
    """The same step as `Trainer` (one D update, one G update, non-saturating loss), hand-written;
    returns seconds for `steps` steps."""
    g = torch.Generator().manual_seed(seed)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    start = time.perf_counter()
    for _ in range(steps):
        real, _ = data.batch(torch.randint(len(data), (batch,), generator=g))
        fake = G(torch.randn(batch, G.z_dim, generator=g))
        loss_d = d_loss_logistic(D(real), D(fake.detach()))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = g_loss_nonsaturating(D(fake))
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    return time.perf_counter() - start


def bench_throughput(quick: bool = False) -> str:
    steps, repeats = (20, 1) if quick else (300, 3)
    preset = recipes.preset("dcgan", "cpu")
    data = datasets.load("digits", preset["resolution"])
    spec = recipes.default_spec("dcgan", preset, data)
    batch = preset["train"]["batch_size"]
    ours, plain = [], []
    for r in range(repeats):  # interleaved, so that drifts in machine load hit both alike
        torch.manual_seed(r)
        G, D = models.build(spec)
        from .train import TrainConfig, Trainer

        t = Trainer(G, D, data, TrainConfig(steps=steps, batch_size=batch, log_every=100), device="cpu")
        t.train(progress=False)
        ours.append(steps * batch / t.elapsed)
        torch.manual_seed(r)
        G, D = models.build(spec)
        plain.append(steps * batch / plain_loop(G, D, data, steps, batch))
    o, p = statistics.median(ours), statistics.median(plain)
    return f"""The `dcgan` cpu preset's networks on digits {preset['resolution']}x{preset['resolution']}, batch {batch},
one D and one G update per step, non-saturating loss, no EMA and no regulariser on either side; {steps} steps per
run, {repeats} runs of each, interleaved; median real images per second.

| loop | images/s |
|---|---|
| `ganlib.train.Trainer` | {o:.0f} |
| plain hand-written loop | {p:.0f} |

Ratio ganlib / plain: **{o / p:.2f}** (runs: ganlib {_join(ours)}; plain {_join(plain)})."""


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
    jobs, timeout = 2, grading.DEFAULT_TIMEOUT
    fresh = []
    for _ in range(1 if quick else 3):  # what a new Python process per submission would pay before any check
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import ganlib.checks"], check=True)
        fresh.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "submissions"
        folder.mkdir()
        for kind, (text, count) in kinds.items():
            for k in range(1 if quick else count):
                (folder / f"{kind.split()[0]}-{k:02d}.ipynb").write_text(text)
        start = time.perf_counter()
        graded = grading.grade(folder, Path(tmp) / "grades.csv", timeout=timeout, jobs=jobs, log=lambda _: None)
        wall = time.perf_counter() - start
    rows = []
    for kind in kinds:
        mine = [g for g in graded if g.student.startswith(kind.split()[0])]
        rows.append(f"| {kind} | {len(mine)} | {statistics.median(g.seconds for g in mine):.2f} | "
                    f"{statistics.mean(g.total for g in mine):.0f} of 3 | {mine[0].status} |")
    ordinary = [g.seconds for g in graded if not g.student.startswith("endless")]
    return f"""`python -m ganlib grade` on a class of {len(graded)} chapter 01 notebooks, `--jobs {jobs}`,
`--timeout {timeout:g}` (each exercise gets an equal share of the time left). Seconds per submission are
measured from the start of its child process to its end.

| submission | count | s each (median) | points | status |
|---|---|---|---|---|
{chr(10).join(rows)}

Wall time for the whole class: **{wall:.1f} s** (including the grading server's start, which imports torch
once). The {len(ordinary)} submissions without a loop took {sum(ordinary):.1f} s of child time in all; an endless
loop costs its exercise's share of the time limit and the other exercises are still graded. For comparison, a
fresh Python process that only imports torch and the checks takes {statistics.median(fresh):.1f} s (median of
{len(fresh)}): {len(graded)} of them would cost {len(graded) * statistics.median(fresh):.0f} s of CPU before the
first check."""


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


BENCHMARKS: dict[str, tuple[str, Callable[[bool], str]]] = {
    "dcgan-digits": ("DCGAN on digits, cpu profile: ganlib against a tutorial-style DCGAN", bench_dcgan_digits),
    "ring8": ("Mode collapse on ring8: vanilla GAN against PacGAN2", bench_ring8),
    "throughput": ("Training-loop throughput: ganlib against a plain loop", bench_throughput),
    "grading": ("Grading a class of 30 submissions", bench_grading),
    "ddp-throughput": ("Several processes: torchrun on the CPU with 1 and 2 processes", bench_ddp_throughput),
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
    torch.set_num_threads(THREADS)
    out = Path(out)
    text = out.read_text() if out.is_file() else HEADER
    command = "python -m ganlib bench" + (" --quick" if quick else "")
    for name in names or list(BENCHMARKS):
        title, fn = BENCHMARKS[name]
        print(f"running {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        body = fn(quick)
        stamp = datetime.date.today().isoformat()
        section = (f"## {title}\n\nCommand: `{command} {name}` · {stamp} · {machine()} · "
                   f"{time.perf_counter() - start:.0f} s in all\n\n{body}")
        text = update_section(text, name, section)
        atomic_write_text(text, out)  # after each benchmark, so a long run keeps what it measured
        print(f"{name}: written to {out}", file=sys.stderr)

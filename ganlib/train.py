"""The training loop every chapter uses.

One *step* is `d_steps` discriminator updates followed by one generator update. Around that the `Trainer`
keeps an exponential moving average of G's weights (`G_ema`, what you sample from), a resumable stream of
minibatches, sample grids, atomic checkpoints and a NaN guard. Chapters change what a step does by
overriding a few small methods (`generate`, `discriminate`, `real_batch`, `d_loss`, `g_loss`,
`begin_step`), never by copying the loop.

Exact resume: all randomness (data order, latents, labels, penalty mixing) comes from generators whose
state is saved in the checkpoint, so N steps in one go and N/2 + resume + N/2 give the same weights on CPU.

Several processes (``torchrun``, see `ganlib.distributed`): every process runs this same loop on its own
slice of each global batch (`BatchStream`) with its own latents; gradients are averaged over the processes
before every optimizer step (`_step`), so all copies of G and D stay equal (checked at every log). Process
0 alone keeps G_ema, writes sample grids and checkpoints and shows progress; every process resumes from the
same checkpoint. A chapter inherits all this as long as its optimizers step through `_step` and any
parameters it creates during training are copied from process 0 (`distributed.broadcast_module`).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import math
import time
import typing
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from . import distributed, layers, losses, models, viz
from .errors import GanlibError, TrainingDiverged
from .files import atomic_save, atomic_write_text, damage, previous_path

CHECKPOINT_FORMAT = 1  # bump when the checkpoint layout changes

# The options a run cannot change when it resumes, and why (the others apply from the resumed step on)
RESUME_FIXED = {"seed": "the data order and the latents follow it",
                "loss": "D's outputs mean what its loss made them mean"}


@dataclass
class TrainConfig:
    """Every knob of the loop, with the value used when you don't say otherwise."""

    steps: int = 1000  # generator updates in total (training stops when `step` reaches this)
    batch_size: int = 64  # real images per discriminator forward pass (a micro-batch when accumulating)
    accumulate: int = 1  # micro-batches per update: gradients are averaged, effective batch = batch_size * this
    loss: str = "nonsaturating"  # a key of losses.GAN_LOSSES
    d_steps: int = 1  # discriminator updates per generator update
    lr_g: float = 2e-4  # Adam learning rate of G
    lr_d: float = 2e-4  # Adam learning rate of D
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas (DCGAN; PGGAN/StyleGAN use (0, 0.99))
    eps: float = 1e-8  # Adam epsilon
    lr_decay_start: float | None = None  # fraction of `steps` after which both rates fall linearly to 0
    gp_weight: float = 0.0  # WGAN-GP lambda (10 in WGAN-GP and PGGAN); 0 = off
    drift: float = 0.0  # PGGAN's drift epsilon (0.001); 0 = off
    r1_gamma: float = 0.0  # R1 gamma (StyleGAN: 10); 0 = off
    r1_every: int = 1  # lazy R1: apply every k D steps, scaled by k (StyleGAN2: 16)
    ortho_beta: float = 0.0  # BigGAN's orthogonal regularisation of G's weights (1e-4); 0 = off
    ema_beta: float | None = None  # G_ema decay per G update (PGGAN 0.999, BigGAN 0.9999) ...
    ema_half_life_kimg: float | None = None  # ... or a half-life in thousands of images (StyleGAN: 10)
    ema_start: int = 0  # before this step G_ema just copies G (BigGAN)
    log_every: int = 50  # steps between loss logs (and NaN checks)
    sample_every: int = 0  # steps between sample grids in the run folder (0: only at the end)
    checkpoint_every: int = 0  # steps between checkpoints (0: only at the end)
    amp: bool = False  # mixed precision (CUDA only: bf16 where supported, else fp16 with loss scaling)
    channels_last: bool = False  # channels_last memory format (CUDA only)
    sync_batchnorm: bool = False  # several GPUs: batch norm statistics over the global batch (SyncBatchNorm);
    # off, each process normalises its own batch (as BigGAN-PyTorch does)
    seed: int = 0  # seeds data order, latents and labels
    # StyleGAN (used by recipes.stylegan.StyleGANTrainer)
    style_mixing: float = 0.0  # probability that a batch gets mixed styles (StyleGAN: 0.9); 0 = off
    pl_weight: float = 0.0  # path-length regularisation weight (StyleGAN2: 2); 0 = off
    pl_every: int = 4  # lazy path-length regularisation: every k G steps, scaled by k (StyleGAN2: 4)
    pl_batch_shrink: int = 2  # the path-length pass uses batch_size / this samples (StyleGAN2: 2)
    pl_decay: float = 0.01  # decay of the running mean of path lengths (StyleGAN2: 0.01)

    def __post_init__(self):
        hints = typing.get_type_hints(TrainConfig)
        for f in fields(self):
            setattr(self, f.name, _checked_option(f.name, getattr(self, f.name), hints[f.name], f.default))
        if self.ema_beta is not None and self.ema_half_life_kimg is not None:
            raise GanlibError("give either ema_beta or ema_half_life_kimg, not both.")

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            named = [name + "".join(f" (did you mean {close}?)" for close in difflib.get_close_matches(name, known, 1))
                     for name in unknown]
            raise GanlibError(f"unknown training option(s) {', '.join(named)}: known are {', '.join(sorted(known))}.")
        return cls(**d)


@dataclass(frozen=True)
class Interval:
    """The valid values of a numeric option: from `low` to `high` (None: no upper bound), ends included unless
    open."""

    low: float
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, v: float) -> bool:
        return ((v > self.low if self.open_low else v >= self.low)
                and (self.high is None or (v < self.high if self.open_high else v <= self.high)))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"


_AT_LEAST_1, _POSITIVE, _NON_NEGATIVE = Interval(1), Interval(0, open_low=True), Interval(0)
_FRACTION, _DECAY = Interval(0, 1), Interval(0, 1, open_high=True)  # [0, 1] and [0, 1)
# The range of every numeric TrainConfig option (betas: of each of the two)
OPTION_RANGES = {
    "steps": _AT_LEAST_1, "batch_size": _AT_LEAST_1, "accumulate": _AT_LEAST_1, "d_steps": _AT_LEAST_1,
    "lr_g": _POSITIVE, "lr_d": _POSITIVE, "betas": _DECAY, "eps": _POSITIVE, "lr_decay_start": _FRACTION,
    "gp_weight": _NON_NEGATIVE, "drift": _NON_NEGATIVE, "r1_gamma": _NON_NEGATIVE, "r1_every": _AT_LEAST_1,
    "ortho_beta": _NON_NEGATIVE, "ema_beta": _DECAY, "ema_half_life_kimg": _POSITIVE, "ema_start": _NON_NEGATIVE,
    "log_every": _AT_LEAST_1, "sample_every": _NON_NEGATIVE, "checkpoint_every": _NON_NEGATIVE,
    "seed": _NON_NEGATIVE, "style_mixing": _FRACTION, "pl_weight": _NON_NEGATIVE, "pl_every": _AT_LEAST_1,
    "pl_batch_shrink": _AT_LEAST_1, "pl_decay": Interval(0, 1, open_low=True),
}


def _checked_option(name: str, value, hint, default):
    """`value` as option `name` of type `hint` holds it (ints accepted as floats, a list as the betas
    tuple), or a GanlibError that says which values are valid."""
    if name == "loss":
        if value not in losses.GAN_LOSSES:
            raise GanlibError(f"unknown loss {value!r}: use one of {', '.join(losses.GAN_LOSSES)}.")
        return value
    optional = type(None) in typing.get_args(hint)
    if optional and value is None:
        return None
    kind = tuple if typing.get_origin(hint) is tuple else next(t for t in typing.get_args(hint) or (hint,)
                                                                 if t is not type(None))
    valid = OPTION_RANGES.get(name)

    def number(v, whole: bool):
        if isinstance(v, bool) or not isinstance(v, int if whole else (int, float)):
            return None
        v = v if whole else float(v)
        return v if math.isfinite(v) and (valid is None or v in valid) else None

    if kind is bool:
        checked, form = (value if isinstance(value, bool) else None), "True or False"
    elif kind is int:
        checked, form = number(value, whole=True), f"a whole number {valid}"
    elif kind is float:
        checked, form = number(value, whole=False), f"a number {valid}"
    else:  # tuple[float, float]: Adam's betas
        pair = tuple(number(v, whole=False) for v in value) if isinstance(value, (tuple, list)) else ()
        checked, form = (pair if len(pair) == 2 and None not in pair else None), f"two numbers {valid}"
    if checked is None:
        example = f", e.g. {name}={default!r}" if default is not None else ""
        raise GanlibError(f"{name} must be {'None or ' if optional else ''}{form}{example}; got {value!r}.")
    return checked


class BatchStream:
    """An endless stream of minibatch indices: a fresh permutation per epoch, batches may straddle epochs.

    Its whole state is (epoch, position), so it resumes exactly. With `world_size` > 1, rank r gets every
    world_size-th index of each global batch (ranks see disjoint data).
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if n <= 0:
            raise GanlibError("the dataset is empty: check the dataset name or folder.")
        self.n, self.batch_size, self.seed, self.rank, self.world_size = n, batch_size, seed, rank, world_size
        self.epoch, self.pos = 0, 0
        self._perm = self._permutation(0)

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def next(self) -> torch.Tensor:
        need, parts = self.batch_size * self.world_size, []
        while need:
            take = min(need, self.n - self.pos)
            parts.append(self._perm[self.pos: self.pos + take])
            self.pos += take
            need -= take
            if self.pos == self.n:
                self.epoch, self.pos = self.epoch + 1, 0
                self._perm = self._permutation(self.epoch)
        return torch.cat(parts)[self.rank:: self.world_size]  # [batch_size]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._perm = self._permutation(self.epoch)


def load_checkpoint_file(path: str | Path) -> dict:
    """Read a ganlib checkpoint with weights_only=True, after checking its checksums (`files.damage`); a
    GanlibError if it is missing, damaged or foreign, which names the previous checkpoint when that one is
    intact."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise GanlibError(f"no checkpoint at {str(path)!r}: train first, or check the run folder.")
    reason = damage(path)
    if reason is None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            reason = str(e).strip().splitlines()[0][:100] if str(e).strip() else type(e).__name__
    if reason is not None:
        raise GanlibError(f"{str(path)!r} is not a readable ganlib checkpoint ({reason}): it is damaged or from "
                          f"another program; {_way_back(path)}.") from None
    if not isinstance(state, dict) or "format" not in state:
        raise GanlibError(f"{str(path)!r} is not a ganlib checkpoint: delete it or point to another run folder.")
    if state["format"] != CHECKPOINT_FORMAT:
        raise GanlibError(f"{str(path)!r} has checkpoint format {state['format']}, this ganlib reads format "
                          f"{CHECKPOINT_FORMAT}: use the ganlib version that wrote it, or train again.")
    return state


def _way_back(path: Path) -> str:
    """What to do about a damaged checkpoint: go back to the previous one when it is intact, else train again."""
    previous = previous_path(path)
    if previous.is_file() and damage(previous) is None:
        with contextlib.suppress(Exception):
            step = torch.load(previous, map_location="cpu", weights_only=True)["step"]
            return (f"the previous checkpoint {str(previous)!r} (step {step}) is intact: rename it to {path.name} "
                    f"to continue from there, or delete both and train again")
    return "delete it and train again"


class Trainer:
    """Trains generator `G` against discriminator `D` on `data` (a `ganlib.data` dataset).

    Args:
        G, D: the two networks. G needs a `z_dim` attribute; a G with `num_classes > 0` is class-conditional.
        data: a dataset with `len()` and `batch(idx) -> (x, labels or None)`.
        cfg: a `TrainConfig`.
        run_dir: where checkpoints and sample grids go (None: nowhere, for quick experiments).
        device: defaults to CUDA when available (under torchrun: this process's own GPU).
        spec: the model spec (see `ganlib.models.build`) saved with checkpoints so that `sample` can rebuild G.

    Under torchrun (a process group is initialised), `rank` and `world_size` say which process this is and
    how many train together; `cfg.batch_size` is then the batch of one process.
    """

    def __init__(self, G: nn.Module, D: nn.Module, data, cfg: TrainConfig, run_dir: str | Path | None = None,
                 device: str | torch.device | None = None, spec: dict | None = None):
        self.cfg = cfg
        self.device = torch.device(device) if device else distributed.local_device()
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.is_main = self.rank == 0  # the process that keeps G_ema and writes files
        self.data = data
        self.run_dir = Path(run_dir) if run_dir else None
        self.spec = spec
        self.conditional = getattr(G, "num_classes", 0) > 0
        if self.conditional and getattr(data, "labels", None) is None:
            raise GanlibError(f"a class-conditional model needs a labelled dataset, and {data.name} has no "
                              f"labels: use num_classes=0, or a labelled dataset such as digits.")
        self.on_cuda = self.device.type == "cuda"
        memory_format = torch.channels_last if (cfg.channels_last and self.on_cuda) else torch.contiguous_format
        self.memory_format = memory_format
        use_ema = (cfg.ema_beta is not None or cfg.ema_half_life_kimg is not None) and self.is_main
        G_ema = copy.deepcopy(G) if use_ema else None  # plain batch norm: process 0 samples with it alone
        if cfg.sync_batchnorm and self.world_size > 1:
            G, D = (distributed.convert_sync_batchnorm(m, self.device) for m in (G, D))
        self.G = G.to(self.device, memory_format=memory_format).train()
        self.D = D.to(self.device, memory_format=memory_format).train()
        for module in (self.G, self.D):  # equal initial weights in every process: process 0's
            distributed.broadcast_module(module)
        self.G_ema = None
        if G_ema is not None:
            self.G_ema = G_ema.to(self.device, memory_format=memory_format).eval().requires_grad_(False)
            self.G_ema.load_state_dict(self.G.state_dict())
        self.d_loss_fn, self.g_loss_fn = losses.GAN_LOSSES[cfg.loss]
        self.opt_g = self.make_optimizer(self.G, cfg.lr_g)
        self.opt_d = self.make_optimizer(self.D, cfg.lr_d)
        amp_dtype = None
        if cfg.amp and self.on_cuda:
            amp_dtype = torch.bfloat16 if torch.cuda.get_device_capability(self.device)[0] >= 8 else torch.float16
        self.amp_dtype = amp_dtype
        self.scalers = {name: torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16) for name in "gd"}
        self.stream = BatchStream(len(data), cfg.batch_size, cfg.seed, self.rank, self.world_size)
        self.rng = torch.Generator().manual_seed(self.rank_seed())  # latents, fake labels, penalty mixing
        if self.rank > 0:  # torch's global RNG (noise inputs, dropout) too differs per process
            torch.manual_seed(self.rank_seed() + 1)
        self.step = 0  # generator updates done
        self.images_seen = 0  # real images shown to D (by all processes)
        self.elapsed = 0.0  # seconds spent training, over all sessions
        self.history: list[dict] = []  # one entry per log_every steps
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0
        self.last_checkpoint_step: int | None = None
        self.resumed_with: list[str] = []  # the options changed on resume (`option_changes`)

    def rank_seed(self, step: int = 0) -> int:
        """The seed of this process's latents at `step`: cfg.seed + 1 for one process (and process 0)."""
        return self.cfg.seed + 1 + 1_000_003 * self.rank + 7_919 * step

    @property
    def global_batch(self) -> int:
        """Real images per D update over all processes and micro-batches."""
        return self.cfg.batch_size * self.cfg.accumulate * self.world_size

    # ------------------------------------------------------------------------------------------------------
    # What a step does (override these in a chapter)

    def make_optimizer(self, module: nn.Module, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(module.parameters(), lr=lr, betas=self.cfg.betas, eps=self.cfg.eps)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def sample_latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """z ~ N(0, I) [n, z_dim] and, for a conditional G, uniformly random labels [n]."""
        z = torch.randn(n, self.G.z_dim, generator=self.rng)
        labels = torch.randint(self.G.num_classes, (n,), generator=self.rng) if self.conditional else None
        return z.to(self.device), (labels.to(self.device) if labels is not None else None)

    def generate(self, G: nn.Module, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return models.generate(G, z, labels)

    def discriminate(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.D(x, labels) if self.conditional else self.D(x)

    def real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, labels = self.data.batch(self.stream.next())
        x = x.to(self.device, non_blocking=True)
        if x.ndim == 4:
            x = x.contiguous(memory_format=self.memory_format)
        return x, (labels.to(self.device) if labels is not None else None)

    def d_loss(self, real: torch.Tensor, labels: torch.Tensor | None, fake: torch.Tensor,
               fake_labels: torch.Tensor | None, d_step_index: int) -> tuple[torch.Tensor, dict]:
        """D's loss on one real and one (detached) fake batch, with the configured penalties."""
        cfg = self.cfg
        r1_due = cfg.r1_gamma > 0 and d_step_index % cfg.r1_every == 0
        if r1_due:
            real = real.detach().requires_grad_(True)
        with self.autocast():
            real_logits = self.discriminate(real, labels)
            fake_logits = self.discriminate(fake, fake_labels)
            loss = self.d_loss_fn(real_logits.float(), fake_logits.float())
        stats = {"loss_d": loss.detach(), "D(x)": real_logits.detach().float().mean(),
                 "D(G(z))": fake_logits.detach().float().mean()}
        if cfg.gp_weight > 0:
            gp = losses.gradient_penalty(lambda x: self.discriminate(x, labels).float(), real, fake, self.rng)
            loss = loss + cfg.gp_weight * gp
            stats["gp"] = gp.detach()
        if cfg.drift > 0:
            loss = loss + cfg.drift * losses.drift_penalty(real_logits.float())
        if r1_due:
            r1 = losses.r1_penalty(real_logits.float(), real)
            loss = loss + (cfg.r1_gamma / 2) * cfg.r1_every * r1  # lazy: k times the weight, every k steps
            stats["r1"] = r1.detach()
        return loss, stats

    def g_loss(self, fake: torch.Tensor, fake_labels: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        with self.autocast():
            loss = self.g_loss_fn(self.discriminate(fake, fake_labels).float())
        stats = {"loss_g": loss.detach()}
        if self.cfg.ortho_beta > 0:
            ortho = losses.orthogonal_regularization(self.G, self.cfg.ortho_beta)
            loss = loss + ortho
            stats["ortho"] = ortho.detach()
        return loss, stats

    def begin_step(self) -> None:
        """Called before every step (PGGAN moves its fade-in schedule here)."""

    def extra_state(self) -> dict:
        """Chapter-specific state to save in the checkpoint (plain values and tensors)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    # ------------------------------------------------------------------------------------------------------
    # The loop

    def d_update(self, index: int) -> dict:
        """One discriminator update, its gradient averaged over `accumulate` micro-batches."""
        k = self.cfg.accumulate
        self.opt_d.zero_grad(set_to_none=True)
        stats: dict[str, torch.Tensor] = {}
        for _ in range(k):
            real, labels = self.real_batch()
            z, fake_labels = self.sample_latents(real.shape[0])
            with torch.no_grad(), self.autocast():
                fake = self.generate(self.G, z, fake_labels)
            loss, micro = self.d_loss(real, labels, fake.detach().float() if self.amp_dtype else fake.detach(),
                                      fake_labels, index)
            self.scalers["d"].scale(loss / k).backward()
            _accumulate(stats, micro, k)
            self.images_seen += real.shape[0] * self.world_size
        self._step(self.opt_d, "d")
        return stats

    def g_update(self) -> dict:
        """One generator update (through a frozen D), its gradient averaged over `accumulate` micro-batches."""
        k = self.cfg.accumulate
        self.opt_g.zero_grad(set_to_none=True)
        self.D.requires_grad_(False)  # G's step needs gradients through D, not for D's weights
        stats: dict[str, torch.Tensor] = {}
        for _ in range(k):
            z, fake_labels = self.sample_latents(self.cfg.batch_size)
            with self.autocast():
                fake = self.generate(self.G, z, fake_labels)
            loss, micro = self.g_loss(fake, fake_labels)
            self.scalers["g"].scale(loss / k).backward()
            _accumulate(stats, micro, k)
        self.D.requires_grad_(True)
        self._step(self.opt_g, "g")
        return stats

    def _step(self, opt: torch.optim.Optimizer, name: str) -> None:
        """Every optimizer update goes through here: average the gradients over the processes, then step."""
        distributed.average_gradients((p for group in opt.param_groups for p in group["params"]),
                                      what="G" if name == "g" else "D")
        scaler = self.scalers[name]
        scaler.step(opt)
        scaler.update()

    def lr_factor(self) -> float:
        """The learning-rate multiplier at the current step: 1, then linear decay to 0 if configured."""
        start = self.cfg.lr_decay_start
        if start is None:
            return 1.0
        decay_steps = max(1.0, (1.0 - start) * self.cfg.steps)
        return min(1.0, max(0.0, (self.cfg.steps - self.step) / decay_steps))

    def train_step(self) -> None:
        if self.cfg.lr_decay_start is not None:
            factor = self.lr_factor()
            for opt, lr in ((self.opt_g, self.cfg.lr_g), (self.opt_d, self.cfg.lr_d)):
                for group in opt.param_groups:
                    group["lr"] = lr * factor
        self.begin_step()
        for i in range(self.cfg.d_steps):
            stats = self.d_update(self.step * self.cfg.d_steps + i)
        stats.update(self.g_update())
        self.update_ema()
        self.step += 1
        for k, v in stats.items():
            self._sums[k] = self._sums.get(k, 0.0) + v.float()
        self._count += 1

    @torch.no_grad()
    def update_ema(self) -> None:
        if self.G_ema is None:
            return
        cfg = self.cfg
        if cfg.ema_half_life_kimg is not None:
            batch = self.global_batch  # images per G update, over all processes
            beta = 0.5 ** (batch / max(cfg.ema_half_life_kimg * 1000, 1e-8))
        else:
            beta = cfg.ema_beta
        if self.step < cfg.ema_start:
            beta = 0.0  # copy G
        ema_params, params = list(self.G_ema.parameters()), list(self.G.parameters())
        torch._foreach_lerp_(ema_params, params, 1.0 - beta)  # ema <- beta * ema + (1 - beta) * p
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)  # buffers (BN statistics, ...) are copied, as in StyleGAN2-ADA

    def flush_stats(self) -> dict:
        """Average the losses since the last flush, append them to `history`, stop if any is NaN/inf.

        With several processes, the losses are averaged over them too, and the copies of G and D are checked
        to be equal."""
        distributed.check_copies_equal({"G": self.G, "D": self.D})
        if not self._count:
            return {}
        entry = {"step": self.step, "kimg": self.images_seen / 1000, "seconds": round(self.elapsed, 2)}
        for k, v in distributed.average_values(self._sums).items():  # the same numbers in every process
            entry[k] = float(v) / self._count
        self._sums, self._count = {}, 0
        bad = [k for k, v in entry.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise self.diverged(f"{bad[0]} became {entry[bad[0]]} by step {self.step}")
        self.history.append(entry)
        return entry

    def diverged(self, what: str) -> TrainingDiverged:
        """The error for a run whose losses or weights stopped being finite (`what` happened), with the way on."""
        fix = "Lower the learning rates or add a regulariser (R1, gradient penalty)"
        if self.last_checkpoint_step is None:
            return TrainingDiverged(f"{what}; no checkpoint had been written yet. {fix}, then train again.")
        where = f" in {self.run_dir}" if self.run_dir is not None else ""
        return TrainingDiverged(f"{what}; the last good checkpoint (step {self.last_checkpoint_step}) is kept{where}. "
                                f"{fix}, then resume from it (--resume --set lr_g=...).")

    def record(self, **values: float) -> None:
        """Add values (a metric, say) to the history entry of the current step; they are saved in checkpoints,
        so curves drawn from `history` survive a resume."""
        if not self.history or self.history[-1]["step"] != self.step:
            self.history.append({"step": self.step, "kimg": self.images_seen / 1000, "seconds": round(self.elapsed, 2)})
        self.history[-1].update(values)

    def train(self, steps: int | None = None, callback: Callable[[Trainer], None] | None = None,
              every: int | None = None, progress: bool = True) -> Trainer:
        """Train until `step` reaches `steps` (default cfg.steps); call `callback(self)` every `every` steps.

        Checkpoints (every cfg.checkpoint_every steps and at the end) and sample grids go to `run_dir`.
        With several processes, every process must call this; the callback and the progress bar run in
        process 0 only.
        """
        from tqdm.auto import tqdm

        steps = self.cfg.steps if steps is None else steps
        cfg = self.cfg
        bar = tqdm(total=steps, initial=self.step, disable=not (progress and self.is_main), dynamic_ncols=True,
                   leave=False)
        start = time.perf_counter() - self.elapsed
        try:
            while self.step < steps:
                self.train_step()
                self.elapsed = time.perf_counter() - start
                bar.update(1)
                at_end = self.step == steps
                if self.step % cfg.log_every == 0 or at_end:
                    entry = self.flush_stats()
                    bar.set_postfix({k: f"{v:.3g}" for k, v in entry.items() if k.startswith("loss")}, refresh=False)
                if callback and self.is_main and ((every and self.step % every == 0) or at_end):
                    callback(self)
                if self.run_dir is not None:
                    if self.is_main and (at_end or (cfg.sample_every and self.step % cfg.sample_every == 0)):
                        self.write_samples()
                    if at_end or (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0):
                        self.save_checkpoint()
                start = time.perf_counter() - self.elapsed  # callbacks and I/O do not count as training time
        finally:
            bar.close()
        return self

    # ------------------------------------------------------------------------------------------------------
    # Sampling

    def sample(self, n: int, labels: torch.Tensor | None = None, seed: int = 0,
               ema: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`n` samples (images in [-1, 1] or points) on the CPU, with their labels if conditional.

        Uses G_ema when there is one (and `ema`), in eval mode, at the current stage of training.
        """
        G = self.G_ema if (ema and self.G_ema is not None) else self.G
        return models.sample(G, n, seed, labels, generate_fn=self.generate, device=self.device)

    def write_samples(self) -> Path:
        """Write a grid of 64 samples (fixed latents, so grids are comparable over time) to run_dir/samples/."""
        from . import viz

        x, labels = self.sample(64, labels=self.grid_labels(64), seed=self.cfg.seed + 12345)
        path = self.run_dir / "samples" / f"step{self.step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if x.ndim == 4:
            viz.save_image_grid(x, path, nrow=8)
        else:
            viz.save_points(x, path, reference=self.data)
        return path

    def grid_labels(self, n: int) -> torch.Tensor | None:
        """Labels for a sample grid: each row one class (0, 1, 2, ... cycling)."""
        if not self.conditional:
            return None
        return (torch.arange(n) // 8) % self.G.num_classes

    # ------------------------------------------------------------------------------------------------------
    # Checkpoints

    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "spec": self.spec,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.cfg).items()},
            "data": getattr(self.data, "name", "?"),
            "resolution": getattr(self.data, "resolution", None),
            "step": self.step,
            "images_seen": self.images_seen,
            "elapsed": self.elapsed,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scalers": {k: s.state_dict() for k, s in self.scalers.items()},
            "stream": self.stream.state_dict(),
            **self.random_state(),
            "history": self.history,
            "extra": self.extra_state(),
        }

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write the whole training state atomically (default: run_dir/checkpoint.pt), after checking that
        the losses and weights are finite, so the file on disk is always a good state to resume from.

        With several processes, every process must call this (they exchange their random and chapter
        states); process 0 writes the file."""
        self.flush_stats()
        for name, module in (("G", self.G), ("D", self.D)):
            if not all(torch.isfinite(p).all() for p in module.parameters()):
                raise self.diverged(f"{name}'s weights became NaN/inf by step {self.step}")
        if path is None:
            if self.run_dir is None:
                raise GanlibError("this trainer has no run_dir: pass a path to save_checkpoint.")
            path = self.run_dir / "checkpoint.pt"
        # each process's random state and chapter state (StyleGAN's path-length mean), for exact resume
        processes = distributed.gather_objects({**self.random_state(), "extra": self.extra_state()})
        if self.is_main:
            state = self.state_dict()
            if self.world_size > 1:
                state["processes"] = processes
            atomic_save(state, path, keep_previous=True)  # the one before stays as checkpoint.prev.pt
            if self.run_dir is not None and Path(path).parent == self.run_dir:
                atomic_write_text(json.dumps({"spec": self.spec, "config": state["config"],
                                              "data": self.data.name, "step": self.step}, indent=2),
                                  self.run_dir / "config.json")
                viz.write_history(self.history, self.run_dir / viz.HISTORY_FILE)  # the curves, readable without torch
        self.last_checkpoint_step = self.step
        return Path(path)

    def load_checkpoint(self, path: str | Path | None = None) -> Trainer:
        """Restore the whole training state; training then continues exactly where it stopped."""
        if path is None:
            if self.run_dir is None:
                raise GanlibError("this trainer has no run_dir: pass the checkpoint path to load_checkpoint.")
            path = self.run_dir / "checkpoint.pt"
        state = load_checkpoint_file(path)
        self.resumed_with = self.option_changes(state, path)
        if self.spec is not None and state["spec"] is not None and state["spec"] != self.spec:
            raise GanlibError(f"{str(path)!r} was written for another model than this run builds "
                              f"({spec_difference(state['spec'], self.spec)}): use the same model settings "
                              f"(--profile, --resolution, --set), or another run folder.")
        try:
            self.G.load_state_dict(state["G"])
            self.D.load_state_dict(state["D"])
            if self.G_ema is not None:
                self.G_ema.load_state_dict(state["G_ema"] if state["G_ema"] is not None else state["G"])
            _load_optimizer_state(self.opt_g, state["opt_g"])
            _load_optimizer_state(self.opt_d, state["opt_d"])
        except (RuntimeError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0][:150]
            raise GanlibError(f"{str(path)!r} does not fit these networks ({first}): it was written for "
                              f"another model; use the same model settings, or another run folder.") from None
        for k, s in self.scalers.items():
            s.load_state_dict(state["scalers"][k])
        self.stream.load_state_dict(state["stream"])
        self.step, self.images_seen, self.elapsed = state["step"], state["images_seen"], state["elapsed"]
        processes = state.get("processes") or [{k: state[k] for k in ("rng", "torch_rng", "cuda_rng", "extra")}]
        extra = state["extra"]
        if len(processes) == self.world_size:
            self.set_random_state(processes[self.rank])
            extra = processes[self.rank]["extra"]
        else:  # another number of processes than the run had: fresh, distinct latents in every process
            self.rng.manual_seed(self.rank_seed(self.step))
            torch.manual_seed(self.rank_seed(self.step) + 1)
            if self.is_main:
                before = state["config"]["batch_size"] * state["config"].get("accumulate", 1) * len(processes)
                warnings.warn(f"{str(path)!r} was trained by {len(processes)} process(es) and continues with "
                              f"{self.world_size}: the global batch changes from {before} to {self.global_batch} "
                              f"(adjust --batch-size or --accumulate to keep it), and the run is no longer "
                              f"exactly reproducible.", stacklevel=2)
        self.history = list(state["history"])
        self.load_extra_state(extra)
        self.last_checkpoint_step = self.step
        return self

    def option_changes(self, state: dict, path: Path) -> list[str]:
        """The training options this run changes from the checkpoint's, as "lr_g 0.0002 -> 0.0001" (they apply
        from now on, the optimizers' rates included); a GanlibError if the dataset or an option of
        `RESUME_FIXED` differs."""
        data = getattr(self.data, "name", "?")
        if state.get("data", data) != data:
            raise GanlibError(f"{str(path)!r} was trained on {state['data']}, this run is on {data}: resume with "
                              f"--data {state['data']}, or start a new run in another folder.")
        show = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
        changes = []
        for name, new in asdict(self.cfg).items():
            old = state["config"].get(name, new)
            old = tuple(old) if isinstance(old, list) else old
            if old == new:
                continue
            if name in RESUME_FIXED:
                raise GanlibError(f"{str(path)!r} was trained with {name}={old!r}, this run asks for {name}={new!r}: "
                                  f"{RESUME_FIXED[name]}, so it cannot change when resuming; resume with "
                                  f"{name}={old!r}, or start a new run in another folder.")
            changes.append(f"{name} {show(old)} -> {show(new)}")
        return changes

    def random_state(self) -> dict:
        """This process's random generators (the trainer's, torch's CPU and CUDA ones)."""
        return {"rng": self.rng.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def set_random_state(self, state: dict) -> None:
        self.rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])


def _load_optimizer_state(opt: torch.optim.Optimizer, saved: dict) -> None:
    """Restore an optimizer's moments from its saved state, keeping the hyper-parameters (lr, betas, eps) it
    was built with from the current config, so that a resumed run applies changed rates."""
    current, groups = opt.state_dict()["param_groups"], saved["param_groups"]
    if len(groups) == len(current):  # else load_state_dict says that the state does not fit
        groups = [{**old, **{k: v for k, v in new.items() if k != "params"}} for old, new in zip(groups, current)]
    opt.load_state_dict({"state": saved["state"], "param_groups": groups})


def _accumulate(total: dict, micro: dict, k: int) -> None:
    for name, value in micro.items():
        total[name] = total.get(name, 0.0) + value / k


def spec_difference(saved: dict, built: dict) -> str:
    """What differs between two model specs, e.g. "family gan vs dcgan" or "D pack 2 vs 1" (saved first)."""
    if saved.get("family") != built.get("family"):
        return f"family {saved.get('family')} vs {built.get('family')}"
    parts = [f"{net} {key} {saved.get(net, {}).get(key)} vs {built.get(net, {}).get(key)}" for net in ("G", "D")
             for key in sorted(set(saved.get(net, {})) | set(built.get(net, {})))
             if saved.get(net, {}).get(key) != built.get(net, {}).get(key)]
    return ", ".join(parts) or f"{describe(saved)} vs {describe(built)}"


def describe(spec: dict | None) -> str:
    """'dcgan(resolution=32, img_channels=1, ...)' for error messages."""
    if not spec:
        return "(unknown)"
    args = ", ".join(f"{k}={v}" for k, v in spec.get("G", {}).items())
    return f"{spec.get('family')}({args})"

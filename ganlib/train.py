"""The training loop every chapter uses.

One *step* is `d_steps` discriminator updates followed by one generator update. Around that the `Trainer`
keeps an exponential moving average of G's weights (`G_ema`, what you sample from), a resumable stream of
minibatches, sample grids, atomic checkpoints and a NaN guard. Chapters change what a step does by
overriding a few small methods (`generate`, `discriminate`, `real_batch`, `d_loss`, `g_loss`,
`begin_step`, `micro_batch`), never by copying the loop. Its options are `options.TrainConfig`; what a checkpoint
holds and how it is read back is `checkpoints` (`TrainConfig` and `load_checkpoint_file` are importable from here
too).

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
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from . import distributed, losses, models
from .checkpoints import CHECKPOINT_FORMAT, Checkpointing, load_checkpoint_file
from .errors import GanlibError, TrainingDiverged
from .options import OPTION_RANGES, Options, TrainConfig

__all__ = ["BatchStream", "CHECKPOINT_FORMAT", "OPTION_RANGES", "TrainConfig", "Trainer", "ema_update",
           "load_checkpoint_file"]


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

    def next(self, batch_size: int | None = None) -> torch.Tensor:
        """The next batch of indices [batch_size] (default: the stream's own batch_size)."""
        need, parts = (batch_size or self.batch_size) * self.world_size, []
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


class Trainer(Checkpointing):
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

    A chapter's trainer with settings of its own declares their dataclass (an `options.Options`) as `OPTIONS`
    and keeps its instance in `options` (StyleGAN's regularisers); they are checkpointed and resumed with cfg.
    """

    OPTIONS: type[Options] | None = None
    options: Options | None = None

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

    def micro_batch(self) -> int:
        """Real images per D forward pass in this process at the current step: cfg.batch_size (a chapter may
        vary it: PGGAN's depends on the resolution)."""
        return self.cfg.batch_size

    def batch_description(self) -> str:
        """The minibatch per process in words, as the command line reports it (a trainer whose `micro_batch`
        varies says how)."""
        return str(self.cfg.batch_size)

    @property
    def global_batch(self) -> int:
        """Real images per D update over all processes and micro-batches (at the current step)."""
        return self.micro_batch() * self.cfg.accumulate * self.world_size

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
        x, labels = self.data.batch(self.stream.next(self.micro_batch()))
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
        stats = {"loss_d": loss.detach(), "logit_real": real_logits.detach().float().mean(),  # D's mean raw output
                 "logit_fake": fake_logits.detach().float().mean()}
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
            z, fake_labels = self.sample_latents(self.micro_batch())
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
            for opt in (self.opt_g, self.opt_d):
                for group in opt.param_groups:  # from each optimiser's own rate (StyleGAN's is lazy-corrected)
                    group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor
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
        ema_update(self.G_ema, self.G, beta)

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
        threads = torch.get_num_threads()
        if cfg.threads and self.device.type == "cpu":  # the run's own count (a tiny step only waits on more)
            torch.set_num_threads(cfg.threads)
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
                if self.run_dir is not None:  # the checkpoint first: a grid on disk implies its step's checkpoint
                    if at_end or (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0):
                        self.save_checkpoint()
                    if self.is_main and (at_end or (cfg.sample_every and self.step % cfg.sample_every == 0)):
                        self.write_samples()
                start = time.perf_counter() - self.elapsed  # callbacks and I/O do not count as training time
        finally:
            bar.close()
            torch.set_num_threads(threads)
        return self

    # ------------------------------------------------------------------------------------------------------
    # Sampling

    def sample(self, n: int, seed: int = 0, labels: torch.Tensor | None = None, truncation: float | None = None,
               ema: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`n` samples (images in [-1, 1] or points) on the CPU, with their labels if conditional: `models.sample`
        (the same arguments) with this trainer's `generate`, at the current stage of training.

        Uses G_ema when there is one (and `ema`), in eval mode.
        """
        G = self.G_ema if (ema and self.G_ema is not None) else self.G
        return models.sample(G, n, seed, labels, truncation, generate_fn=self.generate, device=self.device)

    def write_samples(self) -> Path:
        """Write a grid of 64 samples (fixed latents, so grids are comparable over time) to run_dir/samples/."""
        from . import viz

        x, labels = self.sample(64, seed=self.cfg.seed + 12345, labels=self.grid_labels(64))
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


@torch.no_grad()
def ema_update(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """One step of the exponential moving average of G's weights, in place in `G_ema` (G is not changed): every
    parameter becomes beta * ema + (1 - beta) * p (beta = 0 copies G), and the buffers (batch norm's running
    statistics) are copied from G, as in StyleGAN2-ADA. `G_ema` has G's architecture."""
    ema_params, params = list(G_ema.parameters()), list(G.parameters())
    torch._foreach_lerp_(ema_params, params, 1.0 - beta)  # ema <- beta * ema + (1 - beta) * p
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def _accumulate(total: dict, micro: dict, k: int) -> None:
    for name, value in micro.items():
        total[name] = total.get(name, 0.0) + value / k

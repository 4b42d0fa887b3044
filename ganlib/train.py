"""The training loop every chapter uses.

`Trainer.train_step` is one step, in order: `d_steps` discriminator updates (on reals and detached fakes, with
the penalties the papers add: gradient penalty, drift, lazy R1), one generator update through the updated D
(with BigGAN's orthogonal regularisation), then the moving average of G's weights (`G_ema`, what you sample
from): chapter 01's `train_step` plus those additions. Around it the `Trainer` keeps a resumable stream of
minibatches, atomic checkpoints of its `state_dict()` (`checkpoints`) and a NaN guard; `loop` runs the steps. A
chapter's trainer changes a named piece (`begin_step`, `micro_batch`, `real_batch`, `generate`,
`discriminate`, `make_optimizer`, `lazy_g_regularization`) and adds its own state to `state_dict`. Three seams
keep the engineering out of the step's way: `autocast` (mixed precision), `backward` (loss scaling, the mean
over `cfg.accumulate` micro-batches) and `optimizer_step` (gradients averaged over the processes, the update).

Exact resume: all randomness (data order, latents, labels, penalty mixing) comes from generators whose
state is saved in the checkpoint, so N steps in one go and N/2 + resume + N/2 give the same weights on CPU.

Several processes (``torchrun``, see `ganlib.distributed`): every process runs this loop on its own slice of
each global batch with its own latents, and every update averages the gradients first, so the copies of G
and D stay equal (checked at every log). Process 0 alone keeps G_ema, writes sample grids and checkpoints and
shows progress. A chapter inherits this as long as its optimizers step through `optimizer_step` and any
parameters it creates during training are copied from process 0 (`distributed.broadcast_module`).
"""
from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from . import checkpoints, distributed, loop, losses, models
from .errors import GanlibError, TrainingDiverged
from .options import Options, TrainConfig

__all__ = ["TrainConfig", "Trainer", "ema_update"]


class Trainer:
    """Trains generator `G` against discriminator `D` on `data` (a `ganlib.data` dataset).

    Args:
        G, D: the two networks. G needs a `z_dim` attribute; a G with `num_classes > 0` is class-conditional.
        data: a dataset with `len()` and `batch(idx) -> (x, labels or None)`.
        cfg: a `TrainConfig`.
        run_dir: where checkpoints and sample grids go (None: nowhere, for quick experiments).
        device: defaults to CUDA when available (under torchrun: this process's own GPU).
        spec: the model spec (see `ganlib.models.build`) saved with checkpoints so that `sample` can rebuild G.

    Under torchrun, `rank` and `world_size` say which process this is and how many train together;
    `cfg.batch_size` is then the batch of one process.

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
        use_ema = (cfg.ema_beta is not None or cfg.ema_half_life_kimg is not None) and self.is_main
        G_ema = copy.deepcopy(G) if use_ema else None  # plain batch norm: process 0 samples with it alone
        if cfg.sync_batchnorm and self.world_size > 1:
            G, D = (distributed.convert_sync_batchnorm(m, self.device) for m in (G, D))
        self.G, self.D = G.to(self.device).train(), D.to(self.device).train()
        for module in (self.G, self.D):  # equal initial weights in every process: process 0's
            distributed.broadcast_module(module)
        self.G_ema = None
        if G_ema is not None:
            self.G_ema = G_ema.to(self.device).eval().requires_grad_(False)
            self.G_ema.load_state_dict(self.G.state_dict())
        self.d_loss_fn, self.g_loss_fn = losses.GAN_LOSSES[cfg.loss]
        self.opt_g = self.make_optimizer(self.G, cfg.lr_g)
        self.opt_d = self.make_optimizer(self.D, cfg.lr_d)
        self.amp_dtype = None  # mixed precision (`autocast`): bf16 where the GPU has it, else fp16 with loss scaling
        if cfg.amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.get_device_capability(self.device)[0] >= 8 else torch.float16
        self.scalers = {net: torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16) for net in "gd"}
        self.stream = distributed.BatchStream(len(data), cfg.batch_size, cfg.seed, self.rank, self.world_size)
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
        self.resumed_with: list[str] = []  # the options changed on resume (`options.option_changes`)

    def rank_seed(self, step: int = 0) -> int:
        """The seed of this process's latents at `step`: cfg.seed + 1 for one process (and process 0)."""
        return self.cfg.seed + 1 + 1_000_003 * self.rank + 7_919 * step

    def batch_description(self) -> str:
        """The minibatch per process in words, as the command line reports it (PGGAN's varies)."""
        return str(self.cfg.batch_size)

    @property
    def global_batch(self) -> int:
        """Real images per D update over all processes and micro-batches (at the current step)."""
        return self.micro_batch() * self.cfg.accumulate * self.world_size

    # ------------------------------------------------------------------------------------------------------
    # One step

    def train_step(self) -> None:
        """One step: `d_steps` D updates, one G update, then G_ema moves towards G.

        Chapter 01's step (D on reals and detached fakes, then G through the updated D) plus what the papers add.
        Every update sums its gradient over `cfg.accumulate` micro-batches (`backward` divides each loss by it).
        """
        cfg, k = self.cfg, self.cfg.accumulate
        self.begin_step()
        for i in range(cfg.d_steps):  # D: push D(x) up on reals and D(G(z)) down on fakes
            d_stats: dict[str, torch.Tensor] = {}
            r1_due = cfg.r1_gamma > 0 and (self.step * cfg.d_steps + i) % cfg.r1_every == 0  # lazy R1
            self.opt_d.zero_grad(set_to_none=True)
            for _ in range(k):
                real, labels = self.real_batch()
                self.images_seen += real.shape[0] * self.world_size
                z, fake_labels = self.sample_latents(real.shape[0])
                with torch.no_grad(), self.autocast():
                    fake = self.generate(self.G, z, fake_labels).float()
                if r1_due:
                    real = real.detach().requires_grad_(True)
                with self.autocast():  # logits in fp32, for the losses
                    real_logits = self.discriminate(real, labels).float()
                    fake_logits = self.discriminate(fake, fake_labels).float()
                loss = self.d_loss_fn(real_logits, fake_logits)
                stats = {"loss_d": loss, "logit_real": real_logits.mean(), "logit_fake": fake_logits.mean()}
                if cfg.gp_weight > 0:  # WGAN-GP: D's gradient norm 1 between reals and fakes
                    stats["gp"] = losses.gradient_penalty(lambda x, y=labels: self.discriminate(x, y).float(),
                                                          real, fake, self.rng)
                    loss = loss + cfg.gp_weight * stats["gp"]
                if cfg.drift > 0:  # PGGAN: keeps D(x) near 0
                    loss = loss + cfg.drift * losses.drift_penalty(real_logits)
                if r1_due:  # StyleGAN: |grad D(x)|^2 on reals, every r1_every steps at r1_every times the weight
                    stats["r1"] = losses.r1_penalty(real_logits, real)
                    loss = loss + (cfg.r1_gamma / 2) * cfg.r1_every * stats["r1"]
                self.backward(loss, "d")
                _accumulate(d_stats, stats, k)
            self.optimizer_step(self.opt_d, "d")
        g_stats: dict[str, torch.Tensor] = {}  # G: push D(G(z)) up, through D with its weights frozen
        self.opt_g.zero_grad(set_to_none=True)
        self.D.requires_grad_(False)
        for _ in range(k):
            z, fake_labels = self.sample_latents(self.micro_batch())
            with self.autocast():
                fake = self.generate(self.G, z, fake_labels)
                loss = self.g_loss_fn(self.discriminate(fake, fake_labels).float())
            stats = {"loss_g": loss}
            if cfg.ortho_beta > 0:  # BigGAN: G's filters kept near orthogonal
                stats["ortho"] = losses.orthogonal_regularization(self.G, cfg.ortho_beta)
                loss = loss + stats["ortho"]
            self.backward(loss, "g")
            _accumulate(g_stats, stats, k)
        self.D.requires_grad_(True)
        self.optimizer_step(self.opt_g, "g")
        g_stats.update(self.lazy_g_regularization())
        if self.G_ema is not None:  # the moving average of G's weights, what samples come from
            ema_update(self.G_ema, self.G, self.ema_beta())
        self.step += 1
        self._log({**d_stats, **g_stats})

    # ------------------------------------------------------------------------------------------------------
    # The pieces a chapter may override

    def begin_step(self) -> None:
        """Before every step: the learning rates' decay, if configured (PGGAN also moves its schedule here)."""
        if self.cfg.lr_decay_start is not None:
            factor = self.lr_factor()
            for opt in (self.opt_g, self.opt_d):
                for group in opt.param_groups:  # from each optimiser's own rate (StyleGAN's is lazy-corrected)
                    group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor

    def micro_batch(self) -> int:
        """Real images per D forward pass in this process at the current step: cfg.batch_size (PGGAN's depends
        on the resolution)."""
        return self.cfg.batch_size

    def real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next `micro_batch()` real images (or points) and their labels, on the device."""
        x, labels = self.data.batch(self.stream.next(self.micro_batch()))
        return x.to(self.device, non_blocking=True), (labels.to(self.device) if labels is not None else None)

    def sample_latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """z ~ N(0, I) [n, z_dim] and, for a conditional G, uniformly random labels [n]."""
        z = torch.randn(n, self.G.z_dim, generator=self.rng)
        labels = torch.randint(self.G.num_classes, (n,), generator=self.rng) if self.conditional else None
        return z.to(self.device), (labels.to(self.device) if labels is not None else None)

    def generate(self, G: nn.Module, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """G's output while training (PGGAN: at the current resolution; StyleGAN: with style mixing)."""
        return models.generate(G, z, labels)

    def discriminate(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """D's logits [N] (PGGAN: at the current fade-in)."""
        return self.D(x, labels) if self.conditional else self.D(x)

    def make_optimizer(self, module: nn.Module, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(module.parameters(), lr=lr, betas=self.cfg.betas, eps=self.cfg.eps)

    def lazy_g_regularization(self) -> dict:
        """An extra G update after the G step, every few steps (StyleGAN's path-length penalty); its stats."""
        return {}

    def lr_factor(self) -> float:
        """The learning-rate multiplier at the current step: 1, then linear decay to 0 if configured."""
        start, steps = self.cfg.lr_decay_start, self.cfg.steps
        if start is None:
            return 1.0
        return min(1.0, max(0.0, (steps - self.step) / max(1.0, (1.0 - start) * steps)))

    def ema_beta(self) -> float:
        """G_ema's decay at this step: cfg.ema_beta, or from a half-life in images; 0 (copy G) before ema_start."""
        cfg = self.cfg
        if self.step < cfg.ema_start:
            return 0.0
        if cfg.ema_half_life_kimg is not None:  # per G update of global_batch images, over all processes
            return 0.5 ** (self.global_batch / max(cfg.ema_half_life_kimg * 1000, 1e-8))
        return cfg.ema_beta

    # ------------------------------------------------------------------------------------------------------
    # Seams: mixed precision, accumulation, several processes

    def autocast(self):
        """Mixed precision on CUDA when cfg.amp (bf16 where supported, else fp16); otherwise nothing."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def backward(self, loss: torch.Tensor, net: str) -> None:
        """Add this micro-batch's share of `net`'s ("g" or "d") gradient: loss / cfg.accumulate, scaled for fp16."""
        self.scalers[net].scale(loss / self.cfg.accumulate).backward()

    def optimizer_step(self, opt: torch.optim.Optimizer, net: str) -> None:
        """Every optimizer update goes through here: average the gradients over the processes, then step."""
        distributed.average_gradients((p for group in opt.param_groups for p in group["params"]),
                                      what="G" if net == "g" else "D")
        self.scalers[net].step(opt)
        self.scalers[net].update()

    # ------------------------------------------------------------------------------------------------------
    # The loop, the log, checkpoints

    def _log(self, stats: dict[str, torch.Tensor]) -> None:
        for k, v in stats.items():
            self._sums[k] = self._sums.get(k, 0.0) + v.float()
        self._count += 1

    def flush_stats(self) -> dict:
        """Average the losses since the last flush (over the processes too, after checking that their copies of
        G and D are equal), append them to `history`, stop if any is NaN/inf."""
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
        """Train until `step` reaches `steps` (default cfg.steps), calling `callback(self)` every `every` steps,
        with checkpoints and sample grids in `run_dir`: `loop.train` (the loop around `train_step`)."""
        return loop.train(self, steps, callback, every, progress)

    def state_dict(self) -> dict:
        """This process's whole training state, as a checkpoint holds it (`checkpoints`): the networks, G_ema,
        optimizers, data stream, random generators, history, the run's options and model spec; a chapter's
        trainer adds its own state under "extra"."""
        return {
            "format": checkpoints.CHECKPOINT_FORMAT, "spec": self.spec,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.run_options().items()},
            "data": getattr(self.data, "name", "?"), "resolution": getattr(self.data, "resolution", None),
            "step": self.step, "images_seen": self.images_seen, "elapsed": self.elapsed,
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "scalers": {k: s.state_dict() for k, s in self.scalers.items()}, "stream": self.stream.state_dict(),
            "rng": self.rng.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "history": self.history, "extra": {},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`'s state. "rng" None (another number of processes trained it): fresh latents."""
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if self.G_ema is not None:
            self.G_ema.load_state_dict(state["G_ema"] if state["G_ema"] is not None else state["G"])
        checkpoints.load_optimizer_state(self.opt_g, state["opt_g"])
        checkpoints.load_optimizer_state(self.opt_d, state["opt_d"])
        for k, s in self.scalers.items():
            s.load_state_dict(state["scalers"][k])
        self.stream.load_state_dict(state["stream"])
        self.step, self.images_seen, self.elapsed = state["step"], state["images_seen"], state["elapsed"]
        if state["rng"] is None:  # distinct latents in every process, from this step's seed
            self.rng.manual_seed(self.rank_seed(self.step))
            torch.manual_seed(self.rank_seed(self.step) + 1)
        else:
            self.rng.set_state(state["rng"])
            torch.set_rng_state(state["torch_rng"])
            if state["cuda_rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.history = list(state["history"])

    def run_options(self) -> dict:
        """The run's options as checkpoints record them: cfg's and the chapter trainer's own (`options`)."""
        return {**asdict(self.cfg), **(asdict(self.options) if self.options is not None else {})}

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write the whole training state atomically (default: run_dir/checkpoint.pt), after checking that the
        losses and weights are finite, so the file on disk is always a good state to resume from. With several
        processes, every process must call this (their random and chapter states are gathered)."""
        self.flush_stats()
        for name, module in (("G", self.G), ("D", self.D)):
            if not all(torch.isfinite(p).all() for p in module.parameters()):
                raise self.diverged(f"{name}'s weights became NaN/inf by step {self.step}")
        path = Path(path) if path is not None else self._default_checkpoint("save_checkpoint")
        checkpoints.write(self.state_dict(), path, run_dir=self.run_dir)
        self.last_checkpoint_step = self.step
        return path

    def load_checkpoint(self, path: str | Path | None = None) -> Trainer:
        """Restore the whole training state; training then continues exactly where it stopped."""
        path = Path(path) if path is not None else self._default_checkpoint("load_checkpoint")
        state, self.resumed_with = checkpoints.read_to_resume(path, self.state_dict(), self.global_batch)
        with checkpoints.fitting(path):
            self.load_state_dict(state)
        self.last_checkpoint_step = self.step
        return self

    def _default_checkpoint(self, method: str) -> Path:
        if self.run_dir is None:
            raise GanlibError(f"this trainer has no run_dir: pass the checkpoint path to {method}.")
        return self.run_dir / "checkpoint.pt"

    # ------------------------------------------------------------------------------------------------------
    # Sampling

    def sample(self, n: int, seed: int = 0, labels: torch.Tensor | None = None, truncation: float | None = None,
               ema: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`n` samples (images in [-1, 1] or points) on the CPU, with their labels if conditional: G's `sample`
        (the same arguments), from G_ema when there is one (and `ema`)."""
        G = self.G_ema if (ema and self.G_ema is not None) else self.G
        return G.sample(n, seed, truncation, **({"labels": labels} if self.conditional else {}))


@torch.no_grad()
def ema_update(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """G_ema <- beta * G_ema + (1 - beta) * G, parameter by parameter; buffers (batch-norm statistics, StyleGAN's
    w_avg) are copied, as in StyleGAN2-ADA."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.lerp_(p, 1.0 - beta)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def _accumulate(total: dict, micro: dict, k: int) -> None:
    """Add one micro-batch's stats (detached) to `total`, as the mean over `k` micro-batches."""
    for name, value in micro.items():
        total[name] = total.get(name, 0.0) + value.detach() / k

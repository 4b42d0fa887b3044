"""StyleGAN's additions to the training loop (Karras et al. 2019, 2020; the authors' StyleGAN2-ADA code), and the
generator shipped with the course.

`StyleGANOptions` holds the settings of StyleGAN's regularisers, as StyleGAN2-ADA's `StyleGAN2Loss` holds
them: style mixing, and the lazy path-length penalty. `StyleGANTrainer` is the shared `Trainer` with them:
style-mixing regularisation in `styles`, the path-length penalty as a lazy G update after the G step, and
StyleGAN2's Adam correction for lazy regularisation in `make_optimizer`. A preset's ``"trainer"`` dict holds
the options (`ganlib.recipes.stylegan`); the command line reaches them with ``--set style_mixing=0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from . import losses
from .checkpoints import load_generator
from .files import PRETRAINED
from .models.stylegan import mixing_regularisation
from .options import AT_LEAST_1, FRACTION, NON_NEGATIVE, Options
from .train import Trainer

__all__ = ["StyleGANOptions", "StyleGANTrainer", "pretrained", "pretrained_path"]


@dataclass
class StyleGANOptions(Options):
    """StyleGAN's regularisers, with StyleGAN2's values in the comments (the defaults leave them off)."""

    RANGES = {"style_mixing": FRACTION, "pl_weight": NON_NEGATIVE, "pl_every": AT_LEAST_1,
              "pl_batch_shrink": AT_LEAST_1, "pl_decay": ("in (0, 1]", lambda v: 0 < v <= 1)}

    style_mixing: float = 0.0  # probability that a batch gets mixed styles (StyleGAN: 0.9); 0 = off
    pl_weight: float = 0.0  # path-length regularisation weight (StyleGAN2: 2); 0 = off
    pl_every: int = 4  # lazy path-length regularisation: every k G steps, scaled by k (StyleGAN2: 4)
    pl_batch_shrink: int = 2  # the path-length pass uses batch_size / this samples (StyleGAN2: 2)
    pl_decay: float = 0.01  # decay of the running mean of path lengths (StyleGAN2: 0.01)


class StyleGANTrainer(Trainer):
    """The shared loop plus StyleGAN's training additions: style mixing in `styles`, path-length
    regularisation as an extra, lazy G update (`lazy_g_regularization`), and the Adam correction in
    `make_optimizer`.

    Args: those of `Trainer`, plus the fields of `StyleGANOptions` as keyword arguments (kept in `options`).

    While G trains, its fakes come from mixed styles; samples (G_ema, eval mode) use G's constant noise maps,
    so that grids written during training are comparable and sampling draws nothing from the global RNG.
    """

    OPTIONS = StyleGANOptions

    def __init__(self, G, D, data, cfg, run_dir=None, device=None, spec=None, **options):
        self.options = StyleGANOptions.from_dict(options)  # before the optimisers are made
        super().__init__(G, D, data, cfg, run_dir=run_dir, device=device, spec=spec)
        self.pl_mean = torch.zeros((), device=self.device)  # running mean of the path lengths

    def make_optimizer(self, module, lr):
        cfg, options = self.cfg, self.options
        if module is self.G:
            every = options.pl_every if options.pl_weight > 0 else 1
        else:
            every = cfg.r1_every if cfg.r1_gamma > 0 else 1
        ratio = every / (every + 1) if every > 1 else 1.0  # a lazy regulariser's steps count as extra batches
        return torch.optim.Adam(module.parameters(), lr=lr * ratio, betas=tuple(b ** ratio for b in cfg.betas),
                                eps=cfg.eps)

    def styles(self, G, z: torch.Tensor) -> torch.Tensor:
        """ws [N, num_ws, w_dim] for z [N, z_dim], with style-mixing regularisation at options.style_mixing."""
        return mixing_regularisation(G, z, self.options.style_mixing, self.rng)

    def generate(self, G, z, labels):
        if G.training:
            return G.synthesis(self.styles(G, z))
        return G(z, noise_mode="const")

    def lazy_g_regularization(self) -> dict:
        """Every pl_every steps, one G update on the path-length penalty alone, times pl_every (lazy), on a smaller
        batch, in fp32; the running mean of the path lengths as a stat while the penalty is on."""
        options = self.options
        if options.pl_weight == 0:  # no figure where there is no penalty (the cpu preset has it off)
            return {}
        if self.step % options.pl_every == 0:
            self.opt_g.zero_grad(set_to_none=True)
            z, _ = self.sample_latents(max(1, self.cfg.batch_size // options.pl_batch_shrink))
            ws = self.styles(self.G, z)
            lengths = losses.path_lengths(self.G.synthesis(ws), ws, self.rng)
            penalty, self.pl_mean = losses.path_length_penalty(lengths, self.pl_mean, options.pl_decay)
            self.scalers["g"].scale(penalty * options.pl_weight * options.pl_every).backward()
            self.optimizer_step(self.opt_g, "g")
        return {"pl_mean": self.pl_mean}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "extra": {"pl_mean": self.pl_mean.cpu()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.pl_mean = state["extra"]["pl_mean"].to(self.device)


def pretrained():
    """(G_ema in eval mode, training history) of the generator shipped with the course: the `cpu` preset
    trained on shapes at 32x32 (``python -m gancourse train stylegan --profile cpu``), exported with
    `checkpoints.export_generator`. Loaded with weights_only=True."""
    G, _, state = load_generator(pretrained_path(), device="cpu")
    return G, state["history"]


def pretrained_path() -> Path:
    """The StyleGAN generator shipped with ganlib (trained on shapes at 32x32), for the chapters that sample
    a trained one without training it."""
    return PRETRAINED / "stylegan-shapes32.pt"

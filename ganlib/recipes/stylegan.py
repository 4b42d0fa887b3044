"""StyleGAN2 (and StyleGAN's AdaIN generator, with G's ``style="adain"``) on shapes, digits or an image folder.

Training follows StyleGAN2 (Karras et al. 2020; the authors' StyleGAN2-ADA code): non-saturating logistic
loss, Adam (0, 0.99), R1 on real images every 16 D steps, path-length regularisation (weight 2) every 4 G
steps on half the batch, StyleGAN2's Adam correction for lazy regularisation (lr * k/(k+1), betas^(k/(k+1))),
style-mixing regularisation with probability 0.9, and sampling from an EMA of G.

What the small profiles change, and why: 2 mapping layers instead of 8 (as StyleGAN2-ADA's own small-data
configurations), narrow layers, w of 32 to 128 dimensions, a short EMA half-life (the runs are short). R1 gamma is
1 (StyleGAN2 uses 10 on FFHQ; StyleGAN2-ADA's "auto" rule, 0.0002 res^2 / batch, gives 0.003 here): in a cpu run
with 0.2 (and path-length regularisation on), D's logits ran to about +-3 and G's share of recognised shapes fell
from 0.58 at step 500 to 0.38 at step 1,000.

The cpu preset (shapes at 32x32, 2,000 steps of 64 images) was tuned in short runs scored with the shapes judge,
on one thread: a step of 64 images costs about 1.4x a step of 32 (the layers are small), so batch 64 shows
nearly twice the images in the same time; path-length regularisation is off (as in StyleGAN2-ADA's small-image
`cifar` configuration), which saves about an eighth of a step; and the EMA half-life is 1 kimg (16 steps): G still
changes quickly, and with 4 kimg G_ema recognised 2% of the shapes where G itself recognised 58% (step 500).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import losses, models
from ..models.stylegan import mixing_regularisation
from ..train import Trainer

FAMILY = "stylegan"

_TRAIN = dict(loss="nonsaturating", lr_g=0.002, lr_d=0.002, betas=(0.0, 0.99), r1_gamma=1.0, r1_every=16,
              style_mixing=0.9, pl_weight=2.0, pl_every=4, pl_batch_shrink=2, pl_decay=0.01)

PRESETS = {
    "smoke": {"data": "shapes", "resolution": 16,
              "G": dict(z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32),
              "D": dict(channel_base=256, channel_max=32),
              "train": dict(_TRAIN, steps=8, batch_size=8, ema_half_life_kimg=0.5, log_every=4)},
    "cpu": {"data": "shapes", "resolution": 32,
            "G": dict(z_dim=64, w_dim=64, mapping_layers=2, channel_base=512, channel_max=64),
            "D": dict(channel_base=512, channel_max=64),
            "train": dict(_TRAIN, steps=2000, batch_size=64, pl_weight=0.0, ema_half_life_kimg=1.0, log_every=100,
                          sample_every=500, checkpoint_every=500)},
    "gpu": {"data": "shapes", "resolution": 32,
            "G": dict(z_dim=128, w_dim=128, mapping_layers=8, channel_base=4096, channel_max=256),
            "D": dict(channel_base=4096, channel_max=256),
            "train": dict(_TRAIN, steps=20000, batch_size=64, ema_half_life_kimg=5.0, log_every=200,
                          sample_every=2000, checkpoint_every=2000)},
}


class StyleGANTrainer(Trainer):
    """The shared loop plus StyleGAN's training additions: style mixing in `styles`, path-length
    regularisation as an extra, lazy G update after `g_update`, and the Adam correction in `make_optimizer`.

    While G trains, its fakes come from mixed styles; samples (G_ema, eval mode) use G's constant noise maps,
    so that grids written during training are comparable and sampling draws nothing from the global RNG.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pl_mean = torch.zeros((), device=self.device)  # running mean of the path lengths

    def make_optimizer(self, module, lr):
        cfg = self.cfg
        if module is self.G:
            every = cfg.pl_every if cfg.pl_weight > 0 else 1
        else:
            every = cfg.r1_every if cfg.r1_gamma > 0 else 1
        ratio = every / (every + 1) if every > 1 else 1.0  # a lazy regulariser's steps count as extra batches
        return torch.optim.Adam(module.parameters(), lr=lr * ratio, betas=tuple(b ** ratio for b in cfg.betas),
                                eps=cfg.eps)

    def styles(self, G, z: torch.Tensor) -> torch.Tensor:
        """ws [N, num_ws, w_dim] for z [N, z_dim], with style-mixing regularisation at cfg.style_mixing."""
        return mixing_regularisation(G, z, self.cfg.style_mixing, self.rng)

    def generate(self, G, z, labels):
        if G.training:
            return G.synthesis(self.styles(G, z))
        return G(z, noise_mode="const")

    def g_update(self) -> dict:
        stats = super().g_update()
        if self.cfg.pl_weight > 0 and self.step % self.cfg.pl_every == 0:
            self.pl_update()
        stats["pl_mean"] = self.pl_mean
        return stats

    def pl_update(self) -> None:
        """One G update on the path-length penalty alone, times pl_every (lazy), on a smaller batch, in fp32."""
        cfg = self.cfg
        self.opt_g.zero_grad(set_to_none=True)
        z, _ = self.sample_latents(max(1, cfg.batch_size // cfg.pl_batch_shrink))
        ws = self.styles(self.G, z)
        lengths = losses.path_lengths(self.G.synthesis(ws), ws, self.rng)
        penalty, self.pl_mean = losses.path_length_penalty(lengths, self.pl_mean, cfg.pl_decay)
        self.scalers["g"].scale(penalty * cfg.pl_weight * cfg.pl_every).backward()
        self._step(self.opt_g, "g")

    def extra_state(self) -> dict:
        return {"pl_mean": self.pl_mean.cpu()}

    def load_extra_state(self, state: dict) -> None:
        self.pl_mean = state["pl_mean"].to(self.device)


TRAINER = StyleGANTrainer


PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"


def pretrained():
    """(G_ema in eval mode, training history) of the generator shipped with the course: the `cpu` preset
    trained on shapes at 32x32 (``python -m ganlib train stylegan --profile cpu``), exported with
    `export_generator`. Loaded with weights_only=True."""
    from . import load_generator

    G, _, state = load_generator(pretrained_path(), device="cpu")
    return G, state["history"]


def pretrained_path() -> Path:
    return PRETRAINED / "stylegan-shapes32.pt"


def export_generator(run_dir, path) -> None:
    """Write a run's G_ema, model spec and training history (no D, no optimiser state: a few hundred KB) as a
    file `pretrained` and `recipes.load_generator` can read."""
    from ..files import atomic_save
    from ..train import load_checkpoint_file

    state = load_checkpoint_file(run_dir)
    atomic_save({k: state[k] for k in ("format", "spec", "config", "data", "step", "images_seen", "elapsed",
                                       "G_ema", "history")}, path)


def sample(G, n: int, seed: int = 0, labels=None, truncation: float | None = None):
    """`n` samples (and None for labels) with the truncation trick in W (psi = `truncation`, default 1: off)
    and G's constant noise maps, so that the same seed gives the same images."""
    psi = 1.0 if truncation is None else truncation
    return models.sample(G, n, seed, labels, generate_fn=lambda G, z, y: G(z, truncation_psi=psi, noise_mode="const"))

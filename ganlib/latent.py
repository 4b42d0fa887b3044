"""Working in a trained generator's latent space: projecting real images into it, and finding the direction
along which one factor of the images changes.

- `project` (GAN inversion by optimisation, as in Zhu et al. 2016 and StyleGAN2's projector, in its simplest
  form): the latent whose image is closest to a target, found by gradient descent from several starts.
- `probe_direction`: a linear probe from latents to a measured factor (size, position, colour, ...); its
  weight vector, normalised, is the direction to move along to change that factor (the idea behind
  InterFaceGAN, Shen et al. 2020, with a regression instead of an SVM).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from . import models

__all__ = ["project", "probe_direction"]


def project(G: nn.Module, targets: torch.Tensor, labels: torch.Tensor | None = None, steps: int = 300,
            lr: float = 0.05, starts: int = 4, seed: int = 0,
            generate_fn: Callable = models.generate) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Find latents z whose images G(z) are closest (mean squared pixel error) to `targets`.

    Args:
        G: a generator with a `z_dim` attribute (left unchanged, used in eval mode).
        targets: images [N, C, R, R] in [-1, 1].
        labels: [N] class labels for a class-conditional G (kept fixed).
        steps, lr: Adam steps and learning rate on z.
        starts: random starting latents per target; the best result is kept.
        seed: seeds the starting latents.

    Returns (z [N, z_dim], reconstructions G(z) [N, C, R, R], errors [N]: mean squared error per image).
    """
    n = targets.shape[0]
    device = next(G.parameters()).device
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(starts * n, G.z_dim, generator=g).to(device).requires_grad_(True)  # [starts*N, z_dim]
    x = targets.to(device).repeat(starts, 1, 1, 1)  # [starts*N, C, R, R], start s of target i at s*N + i
    y = labels.to(device).repeat(starts) if labels is not None else None
    was_training, flags = G.training, [p.requires_grad for p in G.parameters()]
    G.eval().requires_grad_(False)
    opt = torch.optim.Adam([z], lr=lr)
    try:
        for _ in range(steps):
            loss = (generate_fn(G, z, y) - x).pow(2).flatten(1).mean(1)  # [starts*N]
            opt.zero_grad()
            loss.sum().backward()  # each latent only affects its own image: the sum optimises all at once
            opt.step()
        with torch.no_grad():
            images = generate_fn(G, z, y)
            errors = (images - x).pow(2).flatten(1).mean(1).reshape(starts, n)  # [starts, N]
            best = errors.argmin(dim=0)  # [N]
            pick = best * n + torch.arange(n, device=device)
    finally:
        G.train(was_training)
        for p, flag in zip(G.parameters(), flags):
            p.requires_grad_(flag)
    return z.detach()[pick].cpu(), images[pick].cpu(), errors.min(dim=0).values.cpu()


def probe_direction(z: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Fit values [N] ~ z [N, D] @ w + b by least squares; return (w / |w| [D], R^2 of the fit).

    R^2 says how much of the factor's variation a straight direction in latent space explains: near 1, moving
    along the direction controls the factor; near 0, the factor is not linear in z."""
    assert z.ndim == 2 and values.shape == (z.shape[0],), (z.shape, values.shape)
    zd, v = z.double(), values.double()
    design = torch.cat([zd, torch.ones(len(zd), 1, dtype=torch.float64)], dim=1)  # [N, D + 1]
    coef = torch.linalg.lstsq(design, v[:, None]).solution.squeeze(1)  # [D + 1]
    residual = v - design @ coef
    r2 = 1 - float(residual.pow(2).sum() / (v - v.mean()).pow(2).sum())
    w = coef[:-1]
    return (w / w.norm()).float(), r2

r"""GAN objectives and regularisers, written on discriminator *logits* (pre-sigmoid scores).

With D(x) = sigmoid(l(x)), the identities  -log D = softplus(-l)  and  -log(1 - D) = softplus(l)  give
numerically safe forms of every log-loss below (log(sigmoid(l)) underflows for large |l|, softplus does not).

Discriminator (all logistic variants):  L_D = E[-log D(x)] + E[-log(1 - D(G(z)))]
Generator, minimax (saturating):        L_G = E[log(1 - D(G(z)))]        (Goodfellow et al. 2014, eq. 1)
Generator, non-saturating:              L_G = E[-log D(G(z))]            (the "-log D trick", same paper)
Hinge (SAGAN/BigGAN):  L_D = E[relu(1 - l(x))] + E[relu(1 + l(G(z)))],  L_G = -E[l(G(z))]
Wasserstein (WGAN):    L_D = E[l(G(z))] - E[l(x)],                      L_G = -E[l(G(z))]

Every loss is a mean over the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def d_loss_logistic(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))), averaged: D's loss for both the minimax and the non-saturating game."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss_minimax(fake_logits: torch.Tensor) -> torch.Tensor:
    """log(1 - D(G(z))), averaged. Saturates: its gradient vanishes when D confidently rejects the fakes."""
    return -F.softplus(fake_logits).mean()


def g_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(G(z)), averaged. Same fixed point as minimax, strong gradient when D rejects the fakes."""
    return F.softplus(-fake_logits).mean()


def d_loss_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def g_loss_hinge(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def d_loss_wasserstein(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return fake_logits.mean() - real_logits.mean()


def g_loss_wasserstein(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


# name -> (discriminator loss, generator loss)
GAN_LOSSES: dict[str, tuple[Callable, Callable]] = {
    "minimax": (d_loss_logistic, g_loss_minimax),
    "nonsaturating": (d_loss_logistic, g_loss_nonsaturating),
    "hinge": (d_loss_hinge, g_loss_hinge),
    "wasserstein": (d_loss_wasserstein, g_loss_wasserstein),
}


def gradient_penalty(discriminate: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, generator: torch.Generator | None = None,
                     target: float = 1.0) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(||grad_x D(x_hat)||_2 - target)^2] at x_hat = lerp(real, fake, u).

    u ~ U(0, 1) is drawn per sample. The gradient is of the *sum* of D(x_hat), so each sample's gradient is
    its own; the penalty is averaged over the batch (as in the PGGAN code). Multiply by lambda (10) yourself.

    Args:
        discriminate: x -> logits [N] (close over labels for a conditional D).
        real, fake: [N, ...] batches of the same shape; `fake` should be detached.
        generator: RNG for u (pass the trainer's, for exact resume).
        target: the gradient norm the penalty pulls towards (1 in WGAN-GP and PGGAN).
    """
    assert real.shape == fake.shape, (real.shape, fake.shape)
    u = torch.rand(real.shape[0], *[1] * (real.ndim - 1), generator=generator).to(real.device, real.dtype)
    x_hat = torch.lerp(real.detach(), fake.detach(), u).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminate(x_hat).sum(), x_hat, create_graph=True)
    norm = grad.flatten(1).norm(dim=1)  # [N]
    return ((norm - target) ** 2).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): E[||grad_x D(x)||^2] on real images; multiply by gamma / 2 yourself.

    `real` must have had ``requires_grad_(True)`` before D produced `real_logits` from it.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1).mean()


def drift_penalty(real_logits: torch.Tensor) -> torch.Tensor:
    """PGGAN's drift term E[D(x)^2], which keeps a Wasserstein critic's output near 0 (weight 0.001)."""
    return real_logits.pow(2).mean()

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

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "d_loss_logistic", "g_loss_minimax", "g_loss_nonsaturating", "d_loss_hinge", "g_loss_hinge", "d_loss_wasserstein",
    "g_loss_wasserstein", "GAN_LOSSES", "gradient_penalty", "r1_penalty", "drift_penalty", "path_lengths",
    "path_length_penalty", "orthogonal_regularization"
]


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
    """relu(1 - l(x)) + relu(1 + l(G(z))), averaged (SAGAN, BigGAN): D is pushed to score reals above +1 and
    fakes below -1, and a sample already past its margin adds neither loss nor gradient."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def g_loss_hinge(fake_logits: torch.Tensor) -> torch.Tensor:
    """-l(G(z)), averaged: G raises D's score of its samples, without a margin (SAGAN, BigGAN)."""
    return -fake_logits.mean()


def d_loss_wasserstein(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """l(G(z)) - l(x), averaged: the critic's estimate of the Wasserstein-1 distance, negated (WGAN); it needs a
    Lipschitz critic (gradient penalty, `gradient_penalty`)."""
    return fake_logits.mean() - real_logits.mean()


def g_loss_wasserstein(fake_logits: torch.Tensor) -> torch.Tensor:
    """-l(G(z)), averaged: G raises the critic's score of its samples (WGAN)."""
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


def path_lengths(images: torch.Tensor, ws: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""StyleGAN2's path lengths (Karras et al. 2020, eq. 4): $\|J_w^\top y\|_2$ per sample, y ~ N(0, I) / sqrt(H W).

    J_w is the Jacobian of the image with respect to w; the gradient of sum(images * y) with respect to ws gives
    J^T y for every layer's w at once, and the length is sqrt(mean over layers of its squared norm), as in
    StyleGAN2-ADA. Differentiable (create_graph), so a penalty on it trains G.

    Args:
        images: G's output [N, C, H, W], computed from `ws`.
        ws: [N, num_ws, w_dim], part of the graph that produced `images`.
        generator: RNG for y (pass the trainer's, for exact resume).
    Returns:
        lengths [N].
    """
    n, _, h, w = images.shape
    y = torch.randn(images.shape, generator=generator).to(images.device, images.dtype) / math.sqrt(h * w)
    (grad,) = torch.autograd.grad((images * y).sum(), ws, create_graph=True)  # [N, num_ws, w_dim]
    return grad.square().sum(dim=2).mean(dim=1).sqrt()  # [N]


def path_length_penalty(lengths: torch.Tensor, pl_mean: torch.Tensor,
                        decay: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """StyleGAN2's path-length regulariser: E[(length - a)^2], with a the running mean of the lengths.

    a <- a + decay * (mean(lengths) - a) first (it starts at 0), then the penalty uses the updated a, as in
    StyleGAN2-ADA (`loss.py`): the gradient flows through the updated a too, so each length is pulled towards the
    others' mean with weight 1 - decay / N instead of 1. Multiply by the weight (2) and, when applied every k
    steps, by k yourself.

    Returns (penalty, the new running mean, detached).
    """
    pl_mean = pl_mean.detach().lerp(lengths.mean(), decay)  # [], differentiable in the lengths
    return (lengths - pl_mean).square().mean(), pl_mean.detach()


def orthogonal_regularization(module: nn.Module, beta: float = 1e-4) -> torch.Tensor:
    r"""BigGAN's orthogonal regularisation: beta * sum_W || W W^T * (1 - I) ||_F^2.

    Every weight with at least two dimensions is reshaped to W [out, -1]; only the *off-diagonal* entries of
    its Gram matrix W W^T are penalised (the filters should be orthogonal to each other, their norms are
    free), unlike the original form ||W^T W - I||^2 (Brock et al. 2017), which also pins every norm to 1.
    Biases, normalisation parameters and embeddings are excluded (BigGAN skips the shared embedding).

    Its gradient is 4 beta (W W^T * (1 - I)) W. BigGAN-PyTorch adds 2 beta (W W^T * (1 - I)) W straight to
    the gradient, i.e. it regularises with beta / 2 in this notation.

    Weights under a spectral-norm parametrisation are penalised in their stored, unnormalised form, as in
    the BigGAN code. Returns a scalar tensor (0 when the module has no such weight).
    """
    excluded = {id(p) for m in module.modules() if isinstance(m, (nn.Embedding, nn.modules.batchnorm._NormBase,
                                                                    nn.GroupNorm, nn.LayerNorm))
                for p in m.parameters()}
    total = None
    for p in module.parameters():
        if p.ndim < 2 or id(p) in excluded:
            continue
        w = p.flatten(1)  # [out, in * kh * kw]
        gram = w @ w.T  # [out, out]
        off_diagonal = gram * (1 - torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype))
        term = off_diagonal.pow(2).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros((), device=next(module.parameters(), torch.zeros(())).device)
    return beta * total

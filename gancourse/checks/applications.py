"""Checks of chapter 06 (applications): a linear-probe direction in latent space, and projecting images into it."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ganlib import latent

from .core import CheckResult, Mistake, answers, close, diagnose, finite, run_check


def _probe_problem(seed: int, n: int = 400, d: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Correlated latents with a nonzero mean and a factor linear in them: (z [n, d], values [n], direction)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.eye(d) + 0.8 * torch.randn(d, d, generator=g) / d ** 0.5
    z = torch.randn(n, d, generator=g) @ mix + 1.5
    w = torch.randn(d, generator=g)
    values = z @ w + 3.0 + 0.05 * torch.randn(n, generator=g)
    return z, values, latent.probe_direction(z, values)[0]


def check_probe_direction(fn: Callable) -> CheckResult:
    """fn(z [N, D], values [N]) -> the unit direction of the least-squares fit values ~ z @ w + b."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        for seed in range(3):
            z, values, ref = _probe_problem(seed)
            out = fn(z.clone(), values.clone())
            if not isinstance(out, torch.Tensor) or out.shape != ref.shape:
                raise Mistake(f"probe_direction should return a tensor of shape {list(ref.shape)} (one entry per "
                              f"latent coordinate), got {type(out).__name__} {list(getattr(out, 'shape', []))}.")
            finite(out)
            out = out.detach().float()
            cos = float(out @ ref / out.norm().clamp_min(1e-12))
            if cos > 0.999 and close(out.norm(), 1.0, rtol=0, atol=1e-3):
                continue
            if cos > 0.999:
                raise Mistake(f"the direction is right but its length is {float(out.norm()):.3f}: divide the "
                              f"weights by their norm, so that alpha in z + alpha * direction is in units of z.")
            if cos < -0.999:
                raise Mistake("the direction points the wrong way: moving along it should *increase* the factor.")
            zc, vc = z - z.mean(0), values - values.mean()
            no_intercept = torch.linalg.lstsq(z.double(), values.double()[:, None]).solution.squeeze(1).float()
            correlation = zc.T @ vc
            diagnose(out, [
                (no_intercept, "fit an intercept too (values ~ z @ w + b): without b, the line is forced through "
                               "z = 0 and the mean of the latents tilts the direction."),
                (correlation, "this is each coordinate's covariance with the factor, which points along the "
                              "regression direction only when the coordinates of z are uncorrelated: solve the "
                              "least-squares problem (torch.linalg.lstsq) instead."),
            ], lambda out, wrong: abs(float(out @ wrong / (out.norm() * wrong.norm()))) > 0.999)
            raise Mistake(f"the direction is off: its cosine with the least-squares direction is {cos:.3f} (it "
                          f"should be 1).")
        return "correct on every test input."

    return run_check("probe_direction", body)


class _LinearGenerator(nn.Module):
    """A generator whose images are linear in z: every image has exactly one latent."""

    def __init__(self, z_dim: int, resolution: int, seed: int):
        super().__init__()
        self.z_dim, self.num_classes, self.resolution = z_dim, 0, resolution
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(resolution * resolution, z_dim, generator=g) / z_dim ** 0.5)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self.weight.T).reshape(-1, 1, self.resolution, self.resolution)  # [N, 1, R, R]


def check_project(fn: Callable) -> CheckResult:
    """fn(G, targets [N, C, R, R], steps, lr) -> z [N, z_dim] whose images G(z) match the targets."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        for seed, (n, z_dim) in enumerate([(3, 4), (5, 8)]):
            G = _LinearGenerator(z_dim, 4, seed)
            before = G.weight.detach().clone()
            z_true = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed + 10))
            with torch.no_grad():
                targets = G(z_true)
            z = fn(G, targets.clone(), 300, 0.05)
            if not isinstance(z, torch.Tensor) or z.shape != (n, z_dim):
                raise Mistake(f"project should return latents of shape {[n, z_dim]}, got {type(z).__name__} "
                              f"{list(getattr(z, 'shape', []))}.")
            finite(z)
            if not torch.equal(G.weight.detach(), before):
                raise Mistake("the generator's weights changed: only z is optimised. Give the optimiser [z] "
                              "alone (and G.requires_grad_(False) saves computing gradients for its weights).")
            with torch.no_grad():
                error = float((G(z.detach().float()) - targets).pow(2).mean())
            start = float(targets.pow(2).mean())
            if error > 1e-3 * start:
                raise Mistake(f"the projection does not reach the targets: mean squared error {error:.4f} "
                              f"(it is {start:.4f} at z = 0). Minimise the mean squared error between G(z) and "
                              f"the targets with Adam on z for `steps` steps, and zero z's gradient every step.")
        return "finds the latents of generated images, and leaves the generator's weights alone."

    return run_check("project", body)


CHECKS = {
    "probe_direction": check_probe_direction,
    "project": check_project,
}

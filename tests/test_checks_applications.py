"""Chapter 06's checks pass correct answers (written the way a student would) and name each typical mistake."""

import pytest
import torch
from check_helpers import lenient, message  # noqa: F401  (lenient is an autouse fixture)

from gancourse import checks


def probe(z, values, intercept=True, normalise=True, sign=1.0):
    design = torch.cat([z, torch.ones(len(z), 1)], 1) if intercept else z
    w = torch.linalg.lstsq(design, values[:, None]).solution.squeeze(1)[: z.shape[1]]
    return sign * (w / w.norm() if normalise else w)


def test_probe_direction_passes():
    assert checks.check_probe_direction(probe).passed


@pytest.mark.parametrize("wrong,expected", [
    (lambda z, v: probe(z, v, normalise=False), "divide the weights by their norm"),
    (lambda z, v: probe(z, v, sign=-1.0), "points the wrong way"),
    (lambda z, v: probe(z, v, intercept=False), "fit an intercept too"),
    (lambda z, v: (z - z.mean(0)).T @ (v - v.mean()) / ((z - z.mean(0)).T @ (v - v.mean())).norm(),
     "covariance with the factor"),
    (lambda z, v: torch.ones(z.shape[1]) / z.shape[1] ** 0.5, "the direction is off"),
    (lambda z, v: probe(z, v)[:-1], "should return a tensor of shape"),
])
def test_probe_direction_mistakes(wrong, expected):
    assert expected in message(checks.check_probe_direction(wrong))


def project(G, targets, steps, lr, include_weights=False, zero_grad=True):
    z = torch.zeros(len(targets), G.z_dim, requires_grad=True)
    opt = torch.optim.Adam([z, *G.parameters()] if include_weights else [z], lr=lr)
    for _ in range(steps):
        loss = (G(z) - targets).pow(2).mean()
        if zero_grad:
            opt.zero_grad()
        loss.backward()
        opt.step()
    return z.detach()


def test_project_passes():
    assert checks.check_project(project).passed


@pytest.mark.parametrize("wrong,expected", [
    (lambda G, x, s, lr: project(G, x, s, lr, include_weights=True), "only z is optimised"),
    (lambda G, x, s, lr: project(G, x, 3, lr), "does not reach the targets"),
    (lambda G, x, s, lr: project(G, x, s, lr)[:1], "should return latents of shape"),
])
def test_project_mistakes(wrong, expected):
    assert expected in message(checks.check_project(wrong))

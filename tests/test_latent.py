"""Projection into a generator's latent space and linear-probe directions."""

import math

import torch
from torch import nn

from ganlib import latent
from ganlib.models import dcgan


class LinearG(nn.Module):
    """x = A z reshaped to images: every image has exactly one latent, so projection must find it."""

    def __init__(self, z_dim=6, resolution=4):
        super().__init__()
        self.z_dim, self.num_classes = z_dim, 0
        self.net = nn.Linear(z_dim, resolution * resolution, bias=False)
        self.resolution = resolution

    def forward(self, z):
        return self.net(z).reshape(-1, 1, self.resolution, self.resolution)


def test_project_recovers_the_latent_of_a_generated_image():
    torch.manual_seed(0)
    G = LinearG()
    z_true = torch.randn(5, 6)
    with torch.no_grad():
        targets = G(z_true)
    z, images, errors = latent.project(G, targets, steps=400, lr=0.05, starts=2)
    assert z.shape == (5, 6) and images.shape == targets.shape and errors.shape == (5,)
    assert torch.allclose(z, z_true, atol=1e-3) and errors.max() < 1e-6
    assert torch.allclose(errors, (images - targets).pow(2).flatten(1).mean(1))


def test_project_keeps_the_best_start_and_leaves_g_alone():
    torch.manual_seed(1)
    G = dcgan.Generator(resolution=16, z_dim=8, width=8, num_classes=3).train()
    before = [p.detach().clone() for p in G.parameters()]
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        G.eval()
        targets = G(torch.randn(2, 8), labels)
        G.train()
    z1, _, e1 = latent.project(G, targets, labels, steps=30, starts=1, seed=3)
    z4, _, e4 = latent.project(G, targets, labels, steps=30, starts=4, seed=3)
    assert (e4 <= e1 + 1e-7).all()  # the first of the 4 starts is the single start: best-of-4 is no worse
    assert G.training and all(p.requires_grad for p in G.parameters())
    assert all(torch.equal(p, q) for p, q in zip(G.parameters(), before))


def test_probe_direction_finds_a_planted_direction():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(3000, 10, generator=g)
    w = torch.zeros(10)
    w[3], w[7] = 2.0, -1.0
    values = z @ w + 5.0 + 0.1 * torch.randn(3000, generator=g)
    direction, r2 = latent.probe_direction(z, values)
    assert math.isclose(float(direction.norm()), 1.0, rel_tol=1e-6)
    assert float(direction @ (w / w.norm())) > 0.999 and r2 > 0.99
    _, r2_noise = latent.probe_direction(z, torch.randn(3000, generator=g))
    assert r2_noise < 0.01  # a factor unrelated to z: no direction explains it

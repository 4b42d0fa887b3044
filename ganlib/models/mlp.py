"""Multi-layer perceptrons for 2-D toy data: the vanilla GAN of Goodfellow et al. (2014).

`MLPDiscriminator(pack=m)` is PacGAN (Lin et al. 2018): D judges m samples at once, concatenated, so a
generator that repeats itself is easy to spot; with m = 1 it is the ordinary discriminator.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import GanlibError


def mlp(sizes: list[int], activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """z [N, z_dim] -> points [N, out_dim]."""

    def __init__(
        self,
        z_dim: int = 64,  # latent size
        hidden: int = 128,  # width of each hidden layer
        depth: int = 2,  # number of hidden layers
        out_dim: int = 2,  # dimension of a data point
    ):
        super().__init__()
        self.z_dim = z_dim
        self.out_dim = out_dim
        self.num_classes = 0  # unconditional
        self.net = mlp([z_dim, *[hidden] * depth, out_dim], nn.ReLU)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [N, {self.z_dim}], got {list(z.shape)}"
        return self.net(z)  # [N, out_dim]


class MLPDiscriminator(nn.Module):
    """points [N, in_dim] -> logits [N / pack]: each logit judges `pack` consecutive samples together."""

    def __init__(
        self,
        in_dim: int = 2,  # dimension of a data point
        hidden: int = 128,  # width of each hidden layer
        depth: int = 2,  # number of hidden layers
        pack: int = 1,  # PacGAN packing degree m (1 = no packing)
    ):
        super().__init__()
        if not isinstance(pack, int) or isinstance(pack, bool) or pack < 1:
            raise GanlibError(f"pack={pack!r}: the packing degree is a whole number of samples per judgement, "
                              f"at least 1 (1 = no packing, 2 = PacGAN2).")
        self.in_dim = in_dim
        self.pack = pack
        self.net = mlp([in_dim * pack, *[hidden] * depth, 1], lambda: nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        assert x.ndim == 2 and x.shape[1] == self.in_dim, f"x must be [N, {self.in_dim}], got {list(x.shape)}"
        if n % self.pack:
            raise GanlibError(f"batch size {n} is not a multiple of the packing degree {self.pack}: choose a batch "
                              f"size divisible by it.")
        packed = x.reshape(n // self.pack, self.pack * self.in_dim)  # [N/m, m*in_dim]: m samples per row
        return self.net(packed).squeeze(1)  # [N/m]

"""Multi-layer perceptrons for 2-D toy data: the vanilla GAN of Goodfellow et al. (2014), and its
class-conditional version.

`MLPDiscriminator(pack=m)` is PacGAN (Lin et al. 2018): D judges m samples at once, concatenated, so a
generator that repeats itself is easy to spot; with m = 1 it is the ordinary discriminator.

With `num_classes` > 0 both networks are conditional (chapter 01b): G reads z with the one-hot label appended
(Mirza & Osindero 2014); D reads the label either the same way (`conditioning="concat"`) or by projection
(`"projection"`, Miyato & Koyama 2018: an unconditional score plus the inner product of a class embedding
with D's last hidden features), the form BigGAN's discriminator uses.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import layers
from ..errors import GanlibError, check_shape
from . import draw, refuse_truncation

__all__ = ["CONDITIONINGS", "mlp", "pack", "MLPGenerator", "MLPDiscriminator"]

CONDITIONINGS = ("concat", "projection")


def mlp(sizes: list[int], activation: type[nn.Module]) -> nn.Sequential:
    """Linear layers of `sizes` [in, hidden..., out] with an `activation` between them (none after the last)."""
    modules: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        modules.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            modules.append(activation())
    return nn.Sequential(*modules)


def pack(x: torch.Tensor, m: int) -> torch.Tensor:
    """PacGAN's packing: points [N, D] -> [N/m, m*D], each row m consecutive samples side by side."""
    n = x.shape[0]
    check_shape(x, (None, None), "PacGAN's points", "points are [N, D]")
    if n % m:
        raise GanlibError(f"batch size {n} is not a multiple of the packing degree {m}: choose a batch size "
                          f"divisible by it.")
    return x.reshape(n // m, m * x.shape[1])


class MLPGenerator(nn.Module):
    """z [N, z_dim] (and labels [N] when conditional) -> points [N, out_dim]."""

    def __init__(
        self,
        z_dim: int = 64,  # latent size
        hidden: int = 128,  # width of each hidden layer
        depth: int = 2,  # number of hidden layers
        out_dim: int = 2,  # dimension of a data point
        num_classes: int = 0,  # > 0: class-conditional, the one-hot label appended to z
    ):
        super().__init__()
        self.z_dim = z_dim
        self.out_dim = out_dim
        self.num_classes = num_classes
        self.net = mlp([z_dim + num_classes, *[hidden] * depth, out_dim], nn.ReLU)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        check_shape(z, (None, self.z_dim), "z", f"latents are [N, z_dim={self.z_dim}]")
        if self.num_classes:
            check_shape(labels, (z.shape[0],), "the conditional generator's labels", "give one class per latent")
            z = layers.one_hot_concat(z, labels, self.num_classes)  # [N, z_dim + K]
        return self.net(z)  # [N, out_dim]

    def sample(self, n: int, seed: int = 0, truncation: float | None = None, labels: torch.Tensor | None = None,
               batch: int = 256) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`n` samples on the CPU, deterministic given `seed`, and their labels: `labels` [n] or uniform when G is
        conditional, else None (`models.draw`). This family has no truncation trick (`truncation` must be None)."""
        refuse_truncation(self, truncation)
        return draw(self, n, seed, labels, batch)


class MLPDiscriminator(nn.Module):
    """points [N, in_dim] (and labels [N] when conditional) -> logits [N / pack]: each logit judges `pack`
    consecutive samples together."""

    def __init__(
        self,
        in_dim: int = 2,  # dimension of a data point
        hidden: int = 128,  # width of each hidden layer
        depth: int = 2,  # number of hidden layers
        pack: int = 1,  # PacGAN packing degree m (1 = no packing)
        num_classes: int = 0,  # > 0: class-conditional
        conditioning: str = "concat",  # how a conditional D reads the label: "concat" or "projection"
    ):
        super().__init__()
        if not isinstance(pack, int) or isinstance(pack, bool) or pack < 1:
            raise GanlibError(f"pack={pack!r}: the packing degree is a whole number of samples per judgement, "
                              f"at least 1 (1 = no packing, 2 = PacGAN2).")
        if conditioning not in CONDITIONINGS:
            raise GanlibError(f"conditioning={conditioning!r}: use one of {', '.join(CONDITIONINGS)}.")
        if num_classes and pack != 1:
            raise GanlibError("a conditional discriminator judges one sample at a time: use pack=1.")
        self.in_dim, self.pack, self.num_classes, self.conditioning = in_dim, pack, num_classes, conditioning
        if num_classes and conditioning == "projection":
            self.net = nn.Sequential(mlp([in_dim, *[hidden] * depth], lambda: nn.LeakyReLU(0.2)), nn.LeakyReLU(0.2))
            self.linear = nn.Linear(hidden, 1)
            self.embed = nn.Embedding(num_classes, hidden)
        else:
            extra = num_classes  # concat: the one-hot label is part of the input
            self.net = mlp([in_dim * pack + extra, *[hidden] * depth, 1], lambda: nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        check_shape(x, (None, self.in_dim), "points", f"this discriminator reads points of dimension {self.in_dim}")
        if self.num_classes:
            check_shape(labels, (n,), "the conditional discriminator's labels", "give one class per point")
        if self.num_classes and self.conditioning == "projection":
            return layers.projection_logits(self.net(x), labels, self.embed, self.linear)  # [N]
        if self.num_classes:
            x = layers.one_hot_concat(x, labels, self.num_classes)  # [N, in_dim + K]
        return self.net(pack(x, self.pack)).squeeze(1)  # [N/m]

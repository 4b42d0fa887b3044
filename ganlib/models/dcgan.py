"""DCGAN (Radford et al. 2016) for any power-of-two resolution from 16 to 128, 1 or 3 channels.

Generator: z -> 4x4 feature map (a transposed conv) -> [transposed conv 4x4 stride 2, BN, ReLU] per doubling
-> transposed conv to the image -> tanh. Discriminator, mirrored: [conv 4x4 stride 2, (BN), LeakyReLU 0.2] per
halving down to 4x4 -> conv 4x4 -> one logit. Weights N(0, 0.02), BN scales N(1, 0.02), as in the paper.

Class-conditional when ``num_classes > 0`` (Mirza & Osindero 2014): G appends a learned class embedding to z,
D appends one constant feature map per class (the one-hot label) to its input.

``d_norm`` chooses the discriminator's normalisation: "batch" is the paper's; "none" avoids batch norm in D,
whose statistics differ between all-real and all-fake batches (and which R1/gradient penalties dislike).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import check_images, check_resolution, check_shape
from . import draw, refuse_truncation

__all__ = ["feature_channels", "dcgan_init", "Generator", "Discriminator"]


def feature_channels(resolution: int, final: int, width: int, max_channels: int) -> int:
    """Channels of the feature map at `resolution` in a net whose final resolution is `final`: doubling
    per halving of the resolution, from `width` just below the output, capped at `max_channels`."""
    return min(width * final // (2 * resolution), max_channels)


def dcgan_init(module: nn.Module) -> None:
    """The DCGAN paper's initialisation of one module (apply it with `G.apply`): weights from N(0, 0.02), batch
    norm scales from N(1, 0.02), zero biases."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """z [N, z_dim] (and labels [N] if conditional) -> images [N, img_channels, resolution, resolution]."""

    def __init__(
        self,
        resolution: int = 32,  # output side length, a power of two in [16, 128]
        img_channels: int = 1,  # 1 (grey) or 3 (RGB)
        z_dim: int = 100,  # latent size
        width: int = 64,  # channels of the last hidden feature map; doubles per halving, up to max_channels
        max_channels: int = 512,  # channel cap
        num_classes: int = 0,  # > 0: class-conditional
        embed_dim: int = 32,  # class embedding size (conditional only)
    ):
        super().__init__()
        check_resolution(resolution, 16, 128)
        self.resolution, self.img_channels, self.z_dim, self.num_classes = resolution, img_channels, z_dim, num_classes
        ch = lambda r: feature_channels(r, resolution, width, max_channels)
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        in_dim = z_dim + (embed_dim if num_classes else 0)
        layers: list[nn.Module] = [nn.ConvTranspose2d(in_dim, ch(4), 4, 1, 0, bias=False),  # 1x1 -> 4x4
                                   nn.BatchNorm2d(ch(4)), nn.ReLU(True)]
        r = 4
        while r * 2 < resolution:  # 4 -> 8 -> ... -> resolution/2
            layers += [nn.ConvTranspose2d(ch(r), ch(2 * r), 4, 2, 1, bias=False), nn.BatchNorm2d(ch(2 * r)),
                       nn.ReLU(True)]
            r *= 2
        layers += [nn.ConvTranspose2d(ch(r), img_channels, 4, 2, 1), nn.Tanh()]  # resolution/2 -> resolution
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        check_shape(z, (None, self.z_dim), "z", f"latents are [N, z_dim={self.z_dim}]")
        if self.num_classes:
            check_shape(labels, (z.shape[0],), "the conditional generator's labels", "give one class per latent")
            z = torch.cat([z, self.embed(labels)], dim=1)  # [N, z_dim + embed_dim]
        x = self.net(z[:, :, None, None])  # [N, C, R, R]
        return x

    def sample(self, n: int, seed: int = 0, truncation: float | None = None, labels: torch.Tensor | None = None,
               batch: int = 256) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`n` samples on the CPU, deterministic given `seed`, and their labels: `labels` [n] or uniform when G is
        conditional, else None (`models.draw`). This family has no truncation trick (`truncation` must be None)."""
        refuse_truncation(self, truncation)
        return draw(self, n, seed, labels, batch)


class Discriminator(nn.Module):
    """images [N, img_channels, resolution, resolution] (and labels [N] if conditional) -> logits [N]."""

    def __init__(
        self,
        resolution: int = 32,  # input side length, a power of two in [16, 128]
        img_channels: int = 1,  # 1 (grey) or 3 (RGB)
        width: int = 64,  # channels after the first conv; doubles per halving, up to max_channels
        max_channels: int = 512,  # channel cap
        num_classes: int = 0,  # > 0: class-conditional (one-hot label maps appended to the input)
        d_norm: str = "batch",  # "batch" (the paper) or "none"
    ):
        super().__init__()
        check_resolution(resolution, 16, 128)
        assert d_norm in ("batch", "none"), d_norm
        self.resolution, self.img_channels, self.num_classes = resolution, img_channels, num_classes
        ch = lambda r: feature_channels(r, resolution, width, max_channels)
        layers: list[nn.Module] = [nn.Conv2d(img_channels + num_classes, ch(resolution // 2), 4, 2, 1),
                                   nn.LeakyReLU(0.2, True)]  # no normalisation on the first layer (paper)
        r = resolution // 2
        while r > 4:
            layers += [nn.Conv2d(ch(r), ch(r // 2), 4, 2, 1, bias=d_norm == "none")]
            layers += [nn.BatchNorm2d(ch(r // 2))] if d_norm == "batch" else []
            layers += [nn.LeakyReLU(0.2, True)]
            r //= 2
        layers += [nn.Conv2d(ch(4), 1, 4, 1, 0)]  # 4x4 -> 1x1: the logit
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        check_images(x, self.img_channels, self.resolution, "the DCGAN discriminator",
                     dtype=next(self.parameters()).dtype)
        if self.num_classes:
            check_shape(labels, (x.shape[0],), "the conditional discriminator's labels", "give one class per image")
            onehot = F.one_hot(labels, self.num_classes).to(x.dtype)  # [N, K]
            x = torch.cat([x, onehot[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)  # [N, C+K, R, R]
        return self.net(x).flatten()  # [N]

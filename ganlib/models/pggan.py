"""PGGAN (Karras et al. 2018): a generator and a discriminator that grow from 4x4 to `max_resolution`.

Both networks hold one block per resolution 4, 8, ..., max_resolution, but use only the blocks up to the
current resolution. When a new resolution arrives it is *faded in*: with weight alpha in [0, 1],

    G:  image = (1 - alpha) * upsample(toRGB_old(x_old)) + alpha * toRGB_new(block_new(x_old))
    D:  h     = (1 - alpha) * fromRGB_old(downsample(image)) + alpha * block_new(fromRGB_new(image))

so at alpha = 0 the networks compute exactly what they computed at the previous resolution (G's image is the
old one, nearest-upsampled; D sees the 2x2 average-pooled image), and at alpha = 1 the new block alone.

As in the authors' code (`G_paper`, `D_paper`): equalized learning rate everywhere; G pixel-normalises z and
every feature map, leaky ReLU 0.2, nearest-neighbour upsampling, toRGB is a linear 1x1 conv with gain 1, the
first dense layer has gain sqrt(2)/4 and, as every layer, one bias per channel (added after the reshape to
[N, C, 4, 4], so the 16 positions share it); D has no normalisation, 2x2 average pooling, minibatch stddev (group 4)
before its last conv, and a linear output with gain 1. Channels per block: min(fmap_base / 2^stage, fmap_max)
with stage = log2(resolution) - 1 (the paper: fmap_base 8192, fmap_max 512). Simplification: the authors'
default fuses upsampling (downsampling) into a transposed (strided) conv; here they stay separate, which is
the other option their code offers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GanlibError, check_images, check_resolution, check_shape
from ..layers import EqualizedConv2d, EqualizedLinear, minibatch_stddev, pixel_norm
from . import draw, refuse_truncation

__all__ = [
    "upsample", "downsample", "fade_in", "fade_reals", "channels", "lrelu", "GeneratorBlock", "Generator",
    "DiscriminatorBlock", "Discriminator", "VERSION", "fade_in_discriminator"
]

VERSION = 2  # of the networks' weights (a checkpoint's spec records it): 2 since G's first layer has one bias per
# channel (version 1 had one per channel and position, 16 per channel)


def upsample(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling [N, C, H, W] -> [N, C, 2H, 2W]."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


def downsample(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling [N, C, H, W] -> [N, C, H/2, W/2] (a box filter)."""
    return F.avg_pool2d(x, 2)


def fade_in(old: torch.Tensor, new: torch.Tensor, alpha: float) -> torch.Tensor:
    """G's fade-in: blend the previous resolution's image `old` [N, C, R/2, R/2], nearest-upsampled, with the new
    block's image `new` [N, C, R, R]: (1 - alpha) * upsample(old) + alpha * new. alpha = 0: old only."""
    assert new.shape[-1] == 2 * old.shape[-1], (old.shape, new.shape)
    return torch.lerp(upsample(old), new, alpha)


def fade_in_discriminator(x: torch.Tensor, alpha: float, from_rgb_new: Callable, block: Callable,
                          from_rgb_old: Callable) -> torch.Tensor:
    """D's fade-in, G's mirrored: images `x` [N, C, R, R] -> features at R/2,
    (1 - alpha) * from_rgb_old(downsample(x)) + alpha * block(from_rgb_new(x)), where `from_rgb_new` maps images
    at R to features (its activation included), `block` halves the resolution and `from_rgb_old` maps images at
    R/2 to the same features. alpha = 0: D judges the 2x2-averaged image with its smaller self."""
    new = block(from_rgb_new(x))  # [N, C', R/2, R/2]
    if alpha >= 1:
        return new
    return torch.lerp(from_rgb_old(downsample(x)), new, alpha)


def fade_reals(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Real images [N, C, R, R] as D should see them while resolution R fades in (the authors' `process_reals`):
    (1 - alpha) * upsample(downsample(x)) + alpha * x, so reals and fakes change in the same way."""
    if alpha >= 1:
        return x
    return torch.lerp(upsample(downsample(x)), x, alpha)


def channels(resolution: int, fmap_base: int, fmap_max: int) -> int:
    """Feature maps of the block at `resolution`: min(fmap_base / 2^stage, fmap_max), stage = log2(R) - 1."""
    stage = int(math.log2(resolution)) - 1
    return min(fmap_base // 2**stage, fmap_max)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """PGGAN's leaky ReLU, slope 0.2."""
    return F.leaky_relu(x, 0.2)


def _alpha(resolution: int, alpha: float) -> float:
    if not 0.0 <= alpha <= 1.0:
        raise GanlibError(f"alpha {alpha!r} is outside [0, 1]: it is the weight of the new block, from 0 (old "
                          f"resolution only) to 1 (new block only).")
    return 1.0 if resolution == 4 else float(alpha)


class GeneratorBlock(nn.Module):
    """One resolution of G: (upsample,) conv 3x3, lrelu, pixel norm, conv 3x3, lrelu, pixel norm."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualizedConv2d(in_channels, out_channels, 3)
        self.conv1 = EqualizedConv2d(out_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pixel_norm(lrelu(self.conv0(upsample(x))))  # [N, out, 2H, 2W]
        return pixel_norm(lrelu(self.conv1(x)))


class Generator(nn.Module):
    """z [N, z_dim] -> images [N, img_channels, R, R] at the requested resolution R <= max_resolution."""

    def __init__(
        self,
        max_resolution: int = 32,  # final resolution, a power of two in [8, 1024]
        img_channels: int = 3,  # 1 (grey) or 3 (RGB)
        z_dim: int = 512,  # latent size (the paper: 512)
        fmap_base: int = 8192,  # channels = min(fmap_base / 2^stage, fmap_max) (the paper: 8192, 512)
        fmap_max: int = 512,
    ):
        super().__init__()
        check_resolution(max_resolution, 8, 1024, "max_resolution")
        self.max_resolution, self.img_channels, self.z_dim = max_resolution, img_channels, z_dim
        self.num_classes = 0
        self.resolutions = [2**k for k in range(2, int(math.log2(max_resolution)) + 1)]  # 4, 8, ...
        ch = [channels(r, fmap_base, fmap_max) for r in self.resolutions]
        self.ch4 = ch[0]
        self.dense = EqualizedLinear(z_dim, ch[0] * 16, bias=False, gain=math.sqrt(2) / 4)  # z -> 4x4 (authors' gain)
        self.dense_bias = nn.Parameter(torch.zeros(ch[0]))  # its bias: one per channel, shared by the 16 positions
        self.conv4 = EqualizedConv2d(ch[0], ch[0], 3)
        self.blocks = nn.ModuleList(GeneratorBlock(a, b) for a, b in zip(ch[:-1], ch[1:]))  # 8, 16, ...
        self.to_rgb = nn.ModuleList(EqualizedConv2d(c, img_channels, 1, gain=1.0) for c in ch)  # 4, 8, ...

    def forward(self, z: torch.Tensor, resolution: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        """Images at `resolution` (default: max_resolution); `alpha` fades its block in (see the module)."""
        resolution = resolution or self.max_resolution
        if resolution not in self.resolutions:
            raise GanlibError(f"resolution {resolution} is not one of this generator's "
                              f"{', '.join(map(str, self.resolutions))}.")
        check_shape(z, (None, self.z_dim), "z", f"latents are [N, z_dim={self.z_dim}]")
        alpha = _alpha(resolution, alpha)
        x = pixel_norm(z)
        x = self.dense(x).view(-1, self.ch4, 4, 4) + self.dense_bias.view(1, -1, 1, 1)  # [N, C4, 4, 4]
        x = pixel_norm(lrelu(x))
        x = pixel_norm(lrelu(self.conv4(x)))
        level = self.resolutions.index(resolution)  # blocks[level - 1] makes this resolution
        if level == 0:
            return self.to_rgb[0](x)  # [N, C, 4, 4]
        for block in self.blocks[: level - 1]:
            x = block(x)  # up to resolution / 2
        new = self.to_rgb[level](self.blocks[level - 1](x))  # [N, C, R, R]
        if alpha >= 1:
            return new
        return fade_in(self.to_rgb[level - 1](x), new, alpha)

    def sample(self, n: int, seed: int = 0, truncation: float | None = None, resolution: int | None = None,
               alpha: float = 1.0, batch: int = 256) -> tuple[torch.Tensor, None]:
        """`n` images on the CPU at `resolution` (default max_resolution) and fade-in `alpha`, deterministic given
        `seed` (`models.draw`), and None (no labels). PGGAN has no truncation trick (`truncation` must be None)."""
        refuse_truncation(self, truncation)
        return draw(self, n, seed, batch=batch, forward=lambda z, _: self(z, resolution, alpha))


class DiscriminatorBlock(nn.Module):
    """One resolution of D: conv 3x3, lrelu, conv 3x3, lrelu, 2x2 average pool."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualizedConv2d(in_channels, in_channels, 3)
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return downsample(lrelu(self.conv1(lrelu(self.conv0(x)))))  # [N, out, H/2, W/2]


class Discriminator(nn.Module):
    """images [N, img_channels, R, R] at any resolution R <= max_resolution -> scores [N] (a WGAN critic)."""

    def __init__(
        self,
        max_resolution: int = 32,  # final resolution, a power of two in [8, 1024]
        img_channels: int = 3,  # 1 (grey) or 3 (RGB)
        fmap_base: int = 8192,  # as in the Generator
        fmap_max: int = 512,
        mbstd_group: int = 4,  # minibatch stddev group size (the authors' code: 4)
    ):
        super().__init__()
        check_resolution(max_resolution, 8, 1024, "max_resolution")
        self.max_resolution, self.img_channels, self.mbstd_group = max_resolution, img_channels, mbstd_group
        self.resolutions = [2**k for k in range(2, int(math.log2(max_resolution)) + 1)]  # 4, 8, ...
        ch = [channels(r, fmap_base, fmap_max) for r in self.resolutions]
        top = min(fmap_base, fmap_max)  # nf(0): the dense layer's width
        self.from_rgb = nn.ModuleList(EqualizedConv2d(img_channels, c, 1) for c in ch)  # 4, 8, ...
        self.blocks = nn.ModuleList(DiscriminatorBlock(b, a) for a, b in zip(ch[:-1], ch[1:]))  # 8, 16, ...
        self.conv4 = EqualizedConv2d(ch[0] + 1, ch[0], 3)  # after minibatch stddev
        self.dense = EqualizedLinear(ch[0] * 16, top)
        self.out = EqualizedLinear(top, 1, gain=1.0)

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """Scores of images at their own resolution; `alpha` fades the top block in, mirroring G."""
        check_images(x, self.img_channels, None, "the PGGAN discriminator",
                     dtype=next(self.parameters()).dtype)
        resolution = x.shape[-1]
        if resolution not in self.resolutions or x.shape[-2] != resolution:
            raise GanlibError(f"the PGGAN discriminator takes square images of "
                              f"{', '.join(map(str, self.resolutions))} pixels, got {list(x.shape)}.")
        alpha = _alpha(resolution, alpha)
        level = self.resolutions.index(resolution)
        if level == 0:
            h = lrelu(self.from_rgb[0](x))  # [N, C4, 4, 4]
        else:
            h = fade_in_discriminator(x, alpha, lambda y: lrelu(self.from_rgb[level](y)), self.blocks[level - 1],
                                      lambda y: lrelu(self.from_rgb[level - 1](y)))  # [N, C_R/2, R/2, R/2]
            for block in reversed(self.blocks[: level - 1]):
                h = block(h)
        assert h.shape[-1] == 4, h.shape  # [N, C4, 4, 4]
        h = minibatch_stddev(h, self.mbstd_group)  # [N, C4 + 1, 4, 4]
        h = lrelu(self.conv4(h))
        h = lrelu(self.dense(h.flatten(1)))  # [N, top]
        return self.out(h).flatten()  # [N]

"""StyleGAN2's residual discriminator (Karras et al. 2020), the `stylegan` family's D, following the authors' code
(NVlabs/stylegan2-ada-pytorch): equalized learning rate, leaky ReLU times sqrt(2) and StyleGAN2's [1, 3, 3, 1]
resampling filter, as in the generator (`stylegan`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import layers
from ..errors import check_images, check_resolution
from .stylegan import feature_channels, lrelu

__all__ = ["DiscriminatorBlock", "Discriminator"]


class DiscriminatorBlock(nn.Module):
    """StyleGAN2's residual block: x [N, I, R, R] -> [N, O, R/2, R/2].

    main: 3x3 conv, lrelu, then a down-sampling 3x3 conv ([1, 3, 3, 1] low-pass filter at R, stride-2 conv), lrelu;
    skip: a down-sampling 1x1 conv (no bias); out = (main + skip) / sqrt(2), which keeps the variance of the sum
    of two unit-variance paths (the authors' `Conv2dLayer(down=2)` and gains sqrt(0.5)).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = layers.EqualizedConv2d(in_channels, in_channels, 3, gain=1.0)
        self.conv1 = layers.EqualizedConv2d(in_channels, out_channels, 3, gain=1.0, down=True)
        self.skip = layers.EqualizedConv2d(in_channels, out_channels, 1, bias=False, gain=1.0, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(x)  # [N, O, R/2, R/2]
        x = lrelu(self.conv0(x))  # [N, I, R, R]
        x = lrelu(self.conv1(x))  # [N, O, R/2, R/2]
        return (x + skip) * math.sqrt(0.5)


class Discriminator(nn.Module):
    """images [N, img_channels, resolution, resolution] -> logits [N]: StyleGAN2's residual discriminator.

    FromRGB (1x1 conv) -> residual blocks down to 4x4 -> minibatch standard deviation (group 4, one feature) ->
    3x3 conv -> fully connected -> one logit.
    """

    def __init__(
        self,
        resolution: int = 32,  # input side length, a power of two in [8, 1024]
        img_channels: int = 3,  # 1 (grey) or 3 (RGB)
        channel_base: int = 32768,  # channels at resolution r: min(channel_base / r, channel_max)
        channel_max: int = 512,
        mbstd_group: int = 4,  # minibatch standard deviation group size (the batch must be a multiple of it)
    ):
        super().__init__()
        check_resolution(resolution, 8, 1024)
        self.resolution, self.img_channels, self.mbstd_group = resolution, img_channels, mbstd_group
        ch = lambda r: feature_channels(r, channel_base, channel_max)
        self.from_rgb = layers.EqualizedConv2d(img_channels, ch(resolution), 1, gain=1.0)
        self.blocks = nn.Sequential(*[DiscriminatorBlock(ch(r), ch(r // 2))
                                      for r in [2 ** k for k in range(int(math.log2(resolution)), 2, -1)]])
        self.conv = layers.EqualizedConv2d(ch(4) + 1, ch(4), 3, gain=1.0)
        self.fc = layers.EqualizedLinear(ch(4) * 16, ch(4), gain=1.0)
        self.out = layers.EqualizedLinear(ch(4), 1, gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, self.img_channels, self.resolution, "the StyleGAN discriminator",
                     dtype=next(self.parameters()).dtype)
        x = lrelu(self.from_rgb(x))  # [N, C, R, R]
        x = self.blocks(x)  # [N, C4, 4, 4]
        x = layers.minibatch_stddev(x, self.mbstd_group)  # [N, C4 + 1, 4, 4]
        x = lrelu(self.conv(x))
        x = lrelu(self.fc(x.flatten(1)))  # [N, C4]
        return self.out(x).flatten()  # [N]

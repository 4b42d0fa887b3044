"""Building blocks shared by the model families, one class or function per paper concept.

Sections, in the order the course meets them:
    PGGAN (Karras et al. 2018): equalized learning rate, pixel normalisation, minibatch standard deviation
    StyleGAN (Karras et al. 2019, 2020): AdaIN, noise injection, modulated convolution
    BigGAN (Brock et al. 2019): conditional batch norm, self-attention, orthogonal regularisation
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .errors import GanlibError

# ----------------------------------------------------------------------------------------------------------
# PGGAN

class EqualizedLinear(nn.Module):
    """A linear layer with an equalized learning rate (Karras et al. 2018, section 4.1).

    The weight is stored as N(0, 1) / lr_mul and multiplied at run time by  gain * lr_mul / sqrt(fan_in),
    so every layer's weights have the same dynamic range and Adam's per-parameter step size means the same
    thing everywhere. The bias is stored raw and multiplied by lr_mul only (never by the He constant).
    """

    def __init__(
        self,
        in_features: int,  # fan-in
        out_features: int,  # output size
        bias: bool = True,  # add a learned bias
        gain: float = math.sqrt(2),  # sqrt(2) before a leaky ReLU (He), 1 for a linear output
        lr_mul: float = 1.0,  # learning-rate multiplier (StyleGAN's mapping network: 0.01)
        bias_init: float = 0.0,  # initial value of the (effective) bias
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul)) if bias else None
        self.weight_gain = gain * lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        return F.linear(x, self.weight * self.weight_gain, bias)  # [N, out]

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, lr_mul={self.lr_mul:g}"


class EqualizedConv2d(nn.Module):
    """A 2-D convolution with an equalized learning rate: weights N(0, 1) / lr_mul, multiplied at run time by
    gain * lr_mul / sqrt(fan_in) with fan_in = in_channels * kernel_size^2; bias raw, times lr_mul.
    "Same" padding, stride 1."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,  # odd: 1 (toRGB/fromRGB) or 3
        bias: bool = True,
        gain: float = math.sqrt(2),  # 1 for toRGB (a linear output)
        lr_mul: float = 1.0,
    ):
        super().__init__()
        assert kernel_size % 2 == 1, f"kernel_size must be odd for 'same' padding, got {kernel_size}"
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = gain * lr_mul / math.sqrt(in_channels * kernel_size**2)
        self.lr_mul = lr_mul
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        return F.conv2d(x, self.weight * self.weight_gain, bias, padding=self.padding)  # [N, out, H, W]

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, lr_mul={self.lr_mul:g}"


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pixel normalisation (PGGAN, section 4.2): each pixel's feature vector divided by its root mean square
    over the channels, x / sqrt(mean_c(x^2) + eps). For x [N, C, H, W] or latents [N, C]; no batch statistics."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


class PixelNorm(nn.Module):
    """`pixel_norm` as a module."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_norm(x, self.eps)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, num_channels: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Minibatch standard deviation (PGGAN, section 3): append the average feature std within groups of
    samples as extra channels, so the discriminator can see a batch that lacks variety.

    As in the authors' code: group size G = min(group_size, N), and N must be a multiple of G; groups are
    strided (sample i is in group i mod N/G); the std is the square root of the *biased* variance plus eps;
    it is averaged over channels (split into `num_channels` parts) and pixels, then tiled over the group
    and H x W.  x [N, C, H, W] -> [N, C + num_channels, H, W].
    """
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g:
        raise GanlibError(f"minibatch stddev: the batch size {n} is not a multiple of the group size {g}: use a "
                          f"batch size that is a multiple of {g}.")
    f = num_channels
    assert c % f == 0, f"{c} channels cannot be split into {f} parts"
    y = x.reshape(g, n // g, f, c // f, h, w)  # [G, M, F, C/F, H, W]: strided groups
    y = y - y.mean(dim=0)  # deviation from the group mean
    y = (y.pow(2).mean(dim=0) + eps).sqrt()  # [M, F, C/F, H, W]: biased std over the group
    y = y.mean(dim=(2, 3, 4))  # [M, F]: average over channels and pixels
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # [N, F, H, W]: sample i gets its group's values
    return torch.cat([x, y], dim=1)  # [N, C + F, H, W]


class MinibatchStdDev(nn.Module):
    """`minibatch_stddev` as a module."""

    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return minibatch_stddev(x, self.group_size, self.num_channels)


# ----------------------------------------------------------------------------------------------------------
# StyleGAN


# ----------------------------------------------------------------------------------------------------------
# BigGAN

"""StyleGAN2's FIR resampling (Karras et al. 2020; the authors' `upfirdn2d` and `conv2d_resample`): the [1, 3, 3, 1]
low-pass filter, up- and down-sampling of images, and the up- and down-sampling convolutions, which zero-pad the
image once, before both filters, as the authors do."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["fir_filter", "fir2d", "upsample2d", "downsample2d", "upsample_conv2d", "conv2d_downsample"]


def fir_filter(taps: tuple[float, ...] = (1, 3, 3, 1)) -> torch.Tensor:
    """The low-pass filter of StyleGAN2's resampling (its `upfirdn2d`), outer(taps, taps) normalised to sum 1:
    [4, 4]. Symmetric, so correlation and convolution with it agree."""
    f = torch.tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def fir2d(x: torch.Tensor, f: torch.Tensor, padding: int, stride: int = 1) -> torch.Tensor:
    """Filter each channel of x [N, C, H, W] with `f` [kh, kw] (correlation; the course's filters are symmetric),
    zero-padding `padding` pixels on every side, keeping every `stride`-th pixel: one depthwise convolution."""
    c = x.shape[1]
    return F.conv2d(x, f.to(x.dtype).expand(c, 1, *f.shape), stride=stride, padding=padding, groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """x [N, C, H, W] -> [N, C, 2H, 2W]: insert a zero after every pixel, then low-pass filter each channel with
    `f` times 4 (which keeps the mean), zero padding outside the image. With the [1, 3, 3, 1] filter this is
    bilinear interpolation (except at the border). Computed as one depthwise transposed convolution."""
    c = x.shape[1]
    return F.conv_transpose2d(x, (f * 4).to(x.dtype).expand(c, 1, *f.shape), stride=2, padding=1, groups=c)


def downsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """x [N, C, H, W] -> [N, C, H/2, W/2]: low-pass filter each channel with `f` (zero padding), keep every
    other pixel."""
    return fir2d(x, f, padding=1, stride=2)


def upsample_conv2d(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's up-sampling convolution: x [N, I, H, W], weight [O, I, k, k] (k odd) -> [N, O, 2H, 2W].

    A stride-2 transposed convolution with the weight (it spreads each input pixel over a k x k patch of the
    doubled grid: [N, O, 2H + k - 2, 2W + k - 2], nothing cut off), then the low-pass filter `f` times 4 with the
    padding that brings it back to 2H x 2W. The image is zero-padded once, before both filters, as in the
    authors' code (StyleGAN2-ADA's `conv2d_resample`); upsampling first and then convolving with "same"
    padding would pad twice and change the outer pixels.
    """
    k, fw = weight.shape[-1], f.shape[-1]
    assert k % 2 == 1 and fw % 2 == 0, f"needs an odd kernel and an even filter, got {k} and {fw}"
    x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)  # [N, O, 2H + k - 2, 2W + k - 2]
    return fir2d(x, f * 4, padding=(fw + 1 - k) // 2)  # [N, O, 2H, 2W]


def conv2d_downsample(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's down-sampling convolution: x [N, I, H, W], weight [O, I, k, k] (k odd) -> [N, O, H/2, W/2].

    The low-pass filter `f` at full resolution, zero padding (fw + k - 3) / 2 (2 for a 3x3 kernel), then a
    stride-2 convolution with the weight and no further padding: the image is padded once, before both
    filters, as in the authors' code (StyleGAN2-ADA's `conv2d_resample`, its `Conv2dLayer(down=2)`).
    """
    k, fw = weight.shape[-1], f.shape[-1]
    assert k % 2 == 1 and fw % 2 == 0, f"needs an odd kernel and an even filter, got {k} and {fw}"
    x = fir2d(x, f, padding=(fw + k - 3) // 2)  # [N, I, H + k - 2, W + k - 2]
    return F.conv2d(x, weight, stride=2)  # [N, O, H/2, W/2]

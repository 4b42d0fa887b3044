"""Building blocks shared by the model families, one class or function per paper concept.

Sections, in the order the course meets them:
    PGGAN (Karras et al. 2018): equalized learning rate, pixel normalisation, minibatch standard deviation
    StyleGAN (Karras et al. 2019, 2020): AdaIN, noise injection, modulated convolution
    BigGAN (Brock et al. 2019): conditional batch norm, self-attention (spectral normalisation, Miyato et al.
    2018: `spectral`; orthogonal regularisation: `losses`)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .errors import GanlibError
from .resampling import conv2d_downsample, fir_filter, upsample_conv2d

__all__ = [
    "EqualizedLinear", "EqualizedConv2d", "pixel_norm", "minibatch_stddev", "adain",
    "AdaIN", "NOISE_MODES", "NoiseInjection", "modulate_weight", "modulated_conv2d",
    "ConditionalBatchNorm2d", "SelfAttention", "one_hot_concat", "projection_logits"
]

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
    "Same" padding, stride 1; with `down`, StyleGAN2's down-sampling convolution (`resampling.conv2d_downsample`)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,  # odd: 1 (toRGB/fromRGB) or 3
        bias: bool = True,
        gain: float = math.sqrt(2),  # 1 for toRGB (a linear output)
        lr_mul: float = 1.0,
        down: bool = False,  # halve the resolution: [1, 3, 3, 1] low-pass filter, then a stride-2 conv
    ):
        super().__init__()
        assert kernel_size % 2 == 1, f"kernel_size must be odd for 'same' padding, got {kernel_size}"
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = gain * lr_mul / math.sqrt(in_channels * kernel_size**2)
        self.lr_mul = lr_mul
        self.padding = kernel_size // 2
        self.down = down
        if down:
            self.register_buffer("fir", fir_filter(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.down:
            x = conv2d_downsample(x, self.weight * self.weight_gain, self.fir)  # [N, out, H/2, W/2]
            return x if bias is None else x + bias[None, :, None, None]
        return F.conv2d(x, self.weight * self.weight_gain, bias, padding=self.padding)  # [N, out, H, W]

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, lr_mul={self.lr_mul:g}" + (", down=2" if self.down else "")


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pixel normalisation (PGGAN, section 4.2): each pixel's feature vector divided by its root mean square
    over the channels, x / sqrt(mean_c(x^2) + eps). For x [N, C, H, W] or latents [N, C]; no batch statistics."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


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


# ----------------------------------------------------------------------------------------------------------
# StyleGAN


def adain(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    r"""Adaptive instance normalisation (Huang & Belongie 2017; StyleGAN eq. 1).

    $\mathrm{AdaIN}(x, s, b) = s \cdot (x - \mu(x)) / \sigma(x) + b$, where $\mu$ and $\sigma$ are the mean and
    (biased) standard deviation of *each sample's* channel over its H x W positions: no batch statistics, so one
    image's style never leaks into another's. The output has per-channel mean `bias` and standard deviation
    `|scale|`. The scale is used as given: centring it at 1 is the job of the layer that computes it from w
    (`AdaIN`'s affine layer starts with bias 1, as in the authors' code).

    Args:
        x: feature maps [N, C, H, W].
        scale, bias: the style, [N, C] each.
        eps: added to the variance (1e-8 in StyleGAN's instance norm).
    """
    assert x.ndim == 4 and scale.shape == bias.shape == x.shape[:2], (x.shape, scale.shape, bias.shape)
    x = x - x.mean(dim=(2, 3), keepdim=True)  # [N, C, H, W], zero mean per sample and channel
    x = x * torch.rsqrt(x.square().mean(dim=(2, 3), keepdim=True) + eps)  # unit variance per sample and channel
    return scale[:, :, None, None] * x + bias[:, :, None, None]


class AdaIN(nn.Module):
    """StyleGAN's style block: w -> (scale, bias) by an equalized affine layer, then `adain`.

    The affine layer's bias starts at 1 for the scales and 0 for the biases, so a fresh layer passes the
    normalised features through unchanged (StyleGAN computes x * (y_s + 1) + y_b; the same thing).
    """

    def __init__(
        self,
        channels: int,  # C, the feature maps to normalise
        w_dim: int,  # size of w
    ):
        super().__init__()
        self.channels = channels
        self.affine = EqualizedLinear(w_dim, 2 * channels, gain=1.0)
        with torch.no_grad():
            self.affine.bias[:channels] = 1.0  # scales centred at 1, biases at 0

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        scale, bias = self.affine(w).chunk(2, dim=1)  # [N, C] each
        return adain(x, scale, bias)


NOISE_MODES = ("random", "const", "none")


class NoiseInjection(nn.Module):
    """Per-pixel noise: x + strength * n, n ~ N(0, 1) of shape [N, 1, H, W], one map shared by all channels.

    StyleGAN learns one strength per channel, StyleGAN2 a single one; both start at 0, so noise only enters
    as the network learns to use it. `noise_mode`: "random" (fresh noise per call), "const" (a fixed map
    stored with the layer, for reproducible images) or "none".
    """

    def __init__(
        self,
        resolution: int,  # H = W of the feature maps (for the stored constant noise)
        channels: int = 1,  # 1: one strength (StyleGAN2); C: one per channel (StyleGAN)
    ):
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(channels))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        assert noise_mode in NOISE_MODES, f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}"
        if noise_mode == "none":
            return x
        if noise_mode == "const":
            noise = self.noise_const.to(x.dtype)  # [1, 1, H, W]
        else:
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)  # [N, 1, H, W]
        return x + noise * self.strength.to(x.dtype).view(1, -1, 1, 1)


def modulate_weight(weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                    eps: float = 1e-8) -> torch.Tensor:
    r"""StyleGAN2's per-sample weights (Karras et al. 2020, eqs. 1 and 3).

    Modulation scales each input channel i by the style: $w'_{oik} = s_i w_{oik}$. Demodulation then divides
    each output channel o by the norm it would have: $w''_{oik} = w'_{oik} / \sqrt{\sum_{i,k} w'^2_{oik} + \epsilon}$,
    so that unit-variance inputs give unit-variance outputs: the normalisation AdaIN did on the *data* is done
    on the *weights*, from expected rather than measured statistics.

    Args:
        weight: [O, I, k, k], shared by all samples.
        styles: [N, I], one scale per sample and input channel.
    Returns:
        [N, O, I, k, k]; with `demodulate`, each [n, o] slice has unit L2 norm (up to eps).
    """
    assert weight.ndim == 4 and styles.ndim == 2 and styles.shape[1] == weight.shape[1], (weight.shape, styles.shape)
    w = weight[None] * styles[:, None, :, None, None]  # [N, O, I, k, k]
    if demodulate:
        w = w * torch.rsqrt(w.square().sum(dim=(2, 3, 4), keepdim=True) + eps)
    return w


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     eps: float = 1e-8, up: bool = False, fir: torch.Tensor | None = None) -> torch.Tensor:
    r"""Convolve each sample with its own modulated (and demodulated) weights, `modulate_weight`, padding k // 2
    (with `up`: StyleGAN2's up-sampling convolution, `resampling.upsample_conv2d`, with the low-pass filter `fir`).

    Computed as StyleGAN2-ADA does while training: scale the input channels by the styles, convolve with the
    shared weight, scale the output channels by the demodulation factors. This equals one grouped convolution
    with the per-sample weights (the tests check it) and is faster than it on small batches. The factors need
    no per-sample weights either: $\sum_{i,k} (s_i w_{oik})^2 = \sum_i s_i^2 \sum_k w_{oik}^2$, a matrix product.

    Args:
        x: [N, I, H, W]; weight: [O, I, k, k]; styles: [N, I].
        up: upsample x2 (then `fir` is required, e.g. `resampling.fir_filter()`).
    Returns:
        [N, O, H, W] ([N, O, 2H, 2W] with `up`).
    """
    assert x.ndim == 4 and x.shape[:2] == styles.shape, (x.shape, styles.shape)
    x = x * styles[:, :, None, None]  # modulate: [N, I, H, W]
    if up:
        assert fir is not None, "an up-sampling convolution needs its low-pass filter `fir`"
        x = upsample_conv2d(x, weight, fir)  # [N, O, 2H, 2W]
    else:
        x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)  # [N, O, H, W]
    if demodulate:
        d = torch.rsqrt(styles.square() @ weight.square().sum(dim=(2, 3)).T + eps)  # [N, I] @ [I, O] -> [N, O]
        x = x * d[:, :, None, None]
    return x


# ----------------------------------------------------------------------------------------------------------
# BigGAN


class ConditionalBatchNorm2d(nn.Module):
    r"""Class-conditional batch norm (de Vries et al. 2017, as in BigGAN's `ccbn`).

    Batch norm without its own affine parameters, then a per-sample, per-channel gain and bias predicted
    from a condition vector c (in BigGAN: the shared class embedding concatenated with a chunk of z):

        y = BN(x) * (1 + W_gain c) + W_bias c

    The gain is centred at 1 (``1 +``), so that a condition vector of zeros leaves plain batch norm; without
    the +1 a freshly initialised layer would multiply its features by a random number near 0. The two linear
    maps have no bias (the repo's shared-embedding setting).
    """

    def __init__(
        self,
        num_features: int,  # channels C of x
        cond_dim: int,  # size of the condition vector c
        eps: float = 1e-5,  # BN epsilon (BigGAN-PyTorch)
        momentum: float = 0.1,  # running-statistics momentum (PyTorch's default, as in the repo)
    ):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=False)
        self.gain = nn.Linear(cond_dim, num_features, bias=False)
        self.bias = nn.Linear(cond_dim, num_features, bias=False)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and c.ndim == 2 and c.shape[0] == x.shape[0], (x.shape, c.shape)
        gain = 1 + self.gain(c)  # [N, C]
        bias = self.bias(c)  # [N, C]
        return self.bn(x) * gain[:, :, None, None] + bias[:, :, None, None]  # [N, C, H, W]


class SelfAttention(nn.Module):
    r"""The SAGAN non-local block (Zhang et al. 2019), as BigGAN uses it.

    Queries theta(x) [C/8], keys phi(x) [C/8] and values g(x) [C/2] are 1x1 convolutions; keys and values are
    2x2 max-pooled (a quarter of the positions). Each position attends over all pooled positions:

        beta = softmax_keys(theta^T phi)        [HW, HW/4]
        out  = x + gamma * o(g beta^T)          o: 1x1 conv from C/2 back to C

    gamma is a learned scalar initialised to 0, so the block starts as the identity and the network learns
    how much non-local evidence to mix in.
    """

    def __init__(
        self,
        channels: int,  # C; a multiple of 8
    ):
        super().__init__()
        assert channels % 8 == 0, f"self-attention needs channels divisible by 8, got {channels}"
        self.theta = nn.Conv2d(channels, channels // 8, 1, bias=False)
        self.phi = nn.Conv2d(channels, channels // 8, 1, bias=False)
        self.g = nn.Conv2d(channels, channels // 2, 1, bias=False)
        self.o = nn.Conv2d(channels // 2, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        assert h % 2 == 0 and w % 2 == 0, f"self-attention pools keys 2x2, so H and W must be even, got {h}x{w}"
        theta = self.theta(x).flatten(2)  # [N, C/8, HW]
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)  # [N, C/8, HW/4]
        g = F.max_pool2d(self.g(x), 2).flatten(2)  # [N, C/2, HW/4]
        beta = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # [N, HW, HW/4], each row sums to 1
        attended = (g @ beta.transpose(1, 2)).reshape(n, c // 2, h, w)  # [N, C/2, H, W]
        return x + self.gamma * self.o(attended)


# ----------------------------------------------------------------------------------------------------------
# Class conditioning (conditional GANs)


def one_hot_concat(x: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The conditional GAN's input (Mirza & Osindero 2014): x [N, F] with the one-hot label appended,
    [N, F + num_classes]."""
    assert x.ndim == 2 and labels.shape == x.shape[:1], (x.shape, labels.shape)
    return torch.cat([x, F.one_hot(labels, num_classes).to(x.dtype)], dim=1)


def projection_logits(h: torch.Tensor, labels: torch.Tensor, embed: nn.Embedding, linear: nn.Linear) -> torch.Tensor:
    """The projection discriminator's output (Miyato & Koyama 2018): linear(h) + <embed(y), h>.

    Args:
        h: D's features after its trunk [N, F].
        labels: class labels [N].
        embed: the class embedding, K x F.
        linear: the unconditional score, F -> 1.
    Returns logits [N].
    """
    assert h.ndim == 2 and labels.shape == h.shape[:1], (h.shape, labels.shape)
    return linear(h).squeeze(1) + (embed(labels) * h).sum(dim=1)  # [N]

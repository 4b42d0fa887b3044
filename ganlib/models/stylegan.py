"""StyleGAN (Karras et al. 2019) and StyleGAN2 (Karras et al. 2020): a style-based generator, following the
authors' code (NVlabs/stylegan, NVlabs/stylegan2-ada-pytorch); its residual discriminator is in
`stylegan_discriminator`.

Generator = `MappingNetwork` (z -> w) then `SynthesisNetwork` (ws -> image):

    z [N, z_dim] -> pixel norm -> MLP -> w [N, w_dim] -> broadcast -> ws [N, num_ws, w_dim]
    const 4x4 -> [conv, conv, ToRGB] at 4x4 -> [up-conv, conv, ToRGB] at 8x8 -> ... -> image, summing the ToRGB
    outputs (each upsampled), StyleGAN2's "skip" architecture. Every conv reads its own row of ws; a ToRGB shares
    its row with the next block's first conv, so num_ws = 2 * log2(resolution) - 2.

`style` chooses how a row of ws enters a conv (the chapter compares the two), once, when the synthesis network
builds its blocks (`BLOCKS`):
    "adain"      StyleGAN (`AdaINBlock` of `AdaINLayer`s): conv -> noise -> bias -> lrelu -> AdaIN(style), one
                 noise strength per channel, constant input of ones that gets the same noise -> bias -> lrelu ->
                 AdaIN before its first conv (reading that conv's row of ws; StyleGAN gives it a row of its own);
    "modulated"  StyleGAN2 (`ModulatedBlock` of `ModulatedLayer`s): the style scales the conv's weights, which
                 are then demodulated; conv -> noise -> bias -> lrelu, one noise strength per layer, constant
                 input ~ N(0, 1).
Both flavours share the skip architecture, the ToRGB layers and StyleGAN2's [1, 3, 3, 1] resampling filter, so
that they differ only in the normalisation (in StyleGAN the image came from the last ToRGB alone, grown
progressively, with [1, 2, 1] blurring).

Equalized learning rate everywhere in StyleGAN2's form: weights ~ N(0, 1) scaled by 1/sqrt(fan_in) at run time,
and the sqrt(2) of He initialisation applied after the leaky ReLU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import layers, resampling
from ..errors import GanlibError, check_resolution, check_shape
from . import draw

__all__ = [
    "LRELU_GAIN", "lrelu", "feature_channels", "MappingNetwork", "broadcast", "truncate", "mix_styles",
    "mixing_regularisation", "ModulatedLayer", "AdaINLayer", "adain_epilogue", "ToRGB", "SynthesisBlock",
    "ModulatedBlock", "AdaINBlock", "BLOCKS", "SynthesisNetwork", "Generator"
]

LRELU_GAIN = math.sqrt(2)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU (slope 0.2) times sqrt(2): keeps the second moment of unit-variance inputs."""
    return F.leaky_relu(x, 0.2) * LRELU_GAIN


def feature_channels(resolution: int, channel_base: int, channel_max: int) -> int:
    """Channels at a resolution: channel_base / resolution, capped (StyleGAN2: base 32768, max 512)."""
    return min(channel_base // resolution, channel_max)


# ----------------------------------------------------------------------------------------------------------
# Latent space: mapping, broadcasting, truncation, mixing


class MappingNetwork(nn.Module):
    """z [N, z_dim] -> w [N, w_dim]: pixel norm of z, then `num_layers` equalized fully connected layers with
    leaky ReLU, their learning rate scaled by `lr_mul` (0.01: the mapping moves 100x slower than the rest).

    Keeps `w_avg`, a running mean of w over training (the centre of truncation): in training mode every call
    moves it towards the batch mean, w_avg <- lerp(mean(w), w_avg, w_avg_beta).
    """

    def __init__(
        self,
        z_dim: int = 512,  # latent size
        w_dim: int = 512,  # intermediate latent size
        num_layers: int = 8,  # fully connected layers (8 in both papers)
        lr_mul: float = 0.01,  # learning-rate multiplier of these layers
        w_avg_beta: float = 0.995,  # decay of the running mean of w
    ):
        super().__init__()
        self.z_dim, self.w_dim, self.w_avg_beta = z_dim, w_dim, w_avg_beta
        self.fcs = nn.ModuleList([layers.EqualizedLinear(z_dim if i == 0 else w_dim, w_dim, lr_mul=lr_mul, gain=1.0)
                                  for i in range(num_layers)])
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, update_w_avg: bool | None = None) -> torch.Tensor:
        """w for latents z. `update_w_avg` (default: in training mode) moves w_avg towards this batch's mean;
        the second latent of style mixing does not."""
        check_shape(z, (None, self.z_dim), "z", f"latents are [N, z_dim={self.z_dim}]")
        x = layers.pixel_norm(z)  # [N, z_dim], unit second moment: the scale of z carries no information
        for fc in self.fcs:
            x = lrelu(fc(x))  # [N, w_dim]
        if update_w_avg is None:
            update_w_avg = self.training
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        return x


def broadcast(w: torch.Tensor, num_ws: int) -> torch.Tensor:
    """w [N, w_dim] -> ws [N, num_ws, w_dim]: the same w for every layer of the synthesis network."""
    check_shape(w, (None, None), "w", "one w per sample: G.mapping(z)")
    return w[:, None, :].expand(-1, num_ws, -1)


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
    """The truncation trick in W: w' = w_avg + psi (w - w_avg), on the first `cutoff` layers (default: all).

    psi = 1 leaves ws as they are, psi = 0 gives every sample the average w, 0 < psi < 1 trades variety
    for typicality. ws [N, num_ws, w_dim] -> same shape (a new tensor).
    """
    check_shape(ws, (None, None, w_avg.shape[0]), "ws", "one w per layer: broadcast(G.mapping(z), G.num_ws)")
    cutoff = ws.shape[1] if cutoff is None else cutoff
    out = ws.clone()
    out[:, :cutoff] = w_avg.lerp(ws[:, :cutoff], psi)
    return out


def mix_styles(ws_a: torch.Tensor, ws_b: torch.Tensor, crossover: int) -> torch.Tensor:
    """Style mixing: layers [0, crossover) read ws_a, layers [crossover, num_ws) read ws_b.

    A small crossover gives b's styles almost everything (only the coarsest layers keep a's); crossover =
    num_ws is ws_a unchanged. ws_a, ws_b [N, num_ws, w_dim] -> a new tensor of the same shape.
    """
    check_shape(ws_a, (None, None, None), "ws_a", "ws are [N, num_ws, w_dim]")
    check_shape(ws_b, tuple(ws_a.shape), "ws_b", "mix two ws of the same shape")
    assert 0 <= crossover <= ws_a.shape[1], f"crossover must be in [0, {ws_a.shape[1]}], got {crossover}"
    return torch.cat([ws_a[:, :crossover], ws_b[:, crossover:]], dim=1)


def mixing_regularisation(G: Generator, z: torch.Tensor, probability: float,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Style-mixing regularisation (StyleGAN section 3.1) for one training batch: ws [N, num_ws, w_dim] for
    z [N, z_dim]. With `probability` (StyleGAN: 0.9) the layers from a crossover drawn uniformly from
    [1, num_ws) read the w of a second latent: one crossover for the whole batch, as in the authors' code; the
    second mapping does not move w_avg. It is a change of G's *inputs* during training, not a loss term.

    Draws from `generator`, in this order: u ~ U(0, 1) (only when probability > 0), the crossover, z2.
    """
    ws = broadcast(G.mapping(z), G.num_ws)  # [N, num_ws, w_dim]
    if probability > 0 and float(torch.rand((), generator=generator)) < probability:
        crossover = int(torch.randint(1, G.num_ws, (), generator=generator))
        z2 = torch.randn(z.shape, generator=generator).to(z.device)
        ws = mix_styles(ws, broadcast(G.mapping(z2, update_w_avg=False), G.num_ws), crossover)
    return ws


# ----------------------------------------------------------------------------------------------------------
# Synthesis


class ModulatedLayer(nn.Module):
    """StyleGAN2's styled 3x3 convolution (optionally its up-sampling convolution, `resampling.upsample_conv2d`):
    the style scales the conv's weights, which are then demodulated; conv -> noise (one strength per layer) -> bias
    -> lrelu. x [N, I, H, W], w [N, w_dim] -> [N, O, H', W']."""

    def __init__(
        self,
        in_channels: int,  # I
        out_channels: int,  # O
        w_dim: int,  # size of w
        resolution: int,  # output resolution H' = W'
        up: bool = False,  # upsample x2 (transposed stride-2 conv, then the low-pass filter)
    ):
        super().__init__()
        self.up, self.resolution = up, resolution
        self.register_buffer("fir", resampling.fir_filter(), persistent=False)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        # styles s = A(w), one per input channel, starting at 1; demodulation makes a weight gain redundant
        self.affine = layers.EqualizedLinear(w_dim, in_channels, gain=1.0, bias_init=1.0)
        self.noise = layers.NoiseInjection(resolution, channels=1)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = layers.modulated_conv2d(x, self.weight, self.affine(w), up=self.up, fir=self.fir)  # [N, O, H', W']
        x = self.noise(x, noise_mode)
        x = lrelu(x + self.bias[None, :, None, None])
        check_shape(x, (None, None, self.resolution, self.resolution), "a synthesis layer's output")
        return x


class AdaINLayer(nn.Module):
    """StyleGAN's styled 3x3 convolution (optionally the same up-sampling convolution): conv -> noise (one strength
    per channel) -> bias -> lrelu -> AdaIN(style) (`adain_epilogue`). x [N, I, H, W], w [N, w_dim] -> [N, O, H', W'].
    The arguments are ModulatedLayer's."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False):
        super().__init__()
        self.up, self.resolution = up, resolution
        self.register_buffer("fir", resampling.fir_filter(), persistent=False)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = LRELU_GAIN / math.sqrt(in_channels * 9)  # StyleGAN: He's gain inside the weight
        self.noise = layers.NoiseInjection(resolution, channels=out_channels)
        self.adain = layers.AdaIN(out_channels, w_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        weight = self.weight * self.weight_gain
        x = resampling.upsample_conv2d(x, weight, self.fir) if self.up else F.conv2d(x, weight, padding=1)
        x = adain_epilogue(x, w, self.noise, self.bias, self.adain, noise_mode)
        check_shape(x, (None, None, self.resolution, self.resolution), "a synthesis layer's output")
        return x


def adain_epilogue(x: torch.Tensor, w: torch.Tensor, noise: layers.NoiseInjection, bias: torch.Tensor,
                   adain: layers.AdaIN, noise_mode: str = "random") -> torch.Tensor:
    """StyleGAN's layer epilogue, after a conv and on the constant input: noise -> bias -> leaky ReLU -> AdaIN.
    x [N, C, H, W], w [N, w_dim] -> [N, C, H, W]."""
    x = noise(x, noise_mode)
    x = F.leaky_relu(x + bias[None, :, None, None], 0.2)
    return adain(x, w)


class ToRGB(nn.Module):
    """Feature maps -> an image contribution: a 1x1 modulated conv *without* demodulation (colours may have
    any scale), plus a bias. x [N, C, H, W], w [N, w_dim] -> [N, img_channels, H, W]."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int):
        super().__init__()
        self.affine = layers.EqualizedLinear(w_dim, in_channels, gain=1.0, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain  # [N, C]
        x = layers.modulated_conv2d(x, self.weight, styles, demodulate=False)
        return x + self.bias[None, :, None, None]


class SynthesisBlock(nn.Module):
    """One resolution: (the constant input at 4x4 | an upsampling conv), a conv, a ToRGB; `ModulatedBlock` and
    `AdaINBlock` say which layers, and how the constant input is made and styled.

    Reads num_conv + 1 rows of ws: one per conv, the last for ToRGB (shared with the next block's first conv).
    """

    Layer: type[nn.Module]  # ModulatedLayer or AdaINLayer

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int):
        super().__init__()
        self.resolution = resolution
        self.register_buffer("fir", resampling.fir_filter(), persistent=False)
        if resolution == 4:
            self.make_constant(out_channels, w_dim)
            self.conv0 = None
        else:
            self.conv0 = self.Layer(in_channels, out_channels, w_dim, resolution, up=True)
        self.conv1 = self.Layer(out_channels, out_channels, w_dim, resolution)
        self.torgb = ToRGB(out_channels, img_channels, w_dim)
        self.num_conv = 1 if resolution == 4 else 2

    def make_constant(self, channels: int, w_dim: int) -> None:
        raise NotImplementedError

    def constant(self, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        """The 4x4 block's input [N, C, 4, 4] for w [N, w_dim]."""
        return self.const[None].expand(w.shape[0], -1, -1, -1)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
        check_shape(ws, (None, self.num_conv + 1, None), "a synthesis block's ws")
        if self.conv0 is None:
            x = self.constant(ws[:, 0], noise_mode)  # [N, C, 4, 4]
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)  # [N, C, R, R]
        x = self.conv1(x, ws[:, self.num_conv - 1], noise_mode)
        y = self.torgb(x, ws[:, self.num_conv])  # [N, img_channels, R, R]
        img = y if img is None else resampling.upsample2d(img, self.fir) + y
        return x, img


class ModulatedBlock(SynthesisBlock):
    """StyleGAN2's block: modulated layers, a constant input ~ N(0, 1) that goes straight into the first conv."""

    Layer = ModulatedLayer

    def make_constant(self, channels: int, w_dim: int) -> None:
        self.const = nn.Parameter(torch.randn(channels, 4, 4))


class AdaINBlock(SynthesisBlock):
    """StyleGAN's block: AdaIN layers, a constant input of ones that gets noise -> bias -> lrelu -> AdaIN before
    its first conv (reading that conv's row of ws; StyleGAN gives it a row of its own)."""

    Layer = AdaINLayer

    def make_constant(self, channels: int, w_dim: int) -> None:
        self.const = nn.Parameter(torch.ones(channels, 4, 4))
        self.const_noise = layers.NoiseInjection(4, channels=channels)
        self.const_bias = nn.Parameter(torch.zeros(channels))
        self.const_adain = layers.AdaIN(channels, w_dim)

    def constant(self, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        x = super().constant(w, noise_mode)
        return adain_epilogue(x, w, self.const_noise, self.const_bias, self.const_adain, noise_mode)


BLOCKS = {"modulated": ModulatedBlock, "adain": AdaINBlock}  # how a row of ws enters a conv (see the module)


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> images [N, img_channels, resolution, resolution] (linear output, no tanh)."""

    def __init__(
        self,
        resolution: int = 32,  # output side length, a power of two
        img_channels: int = 3,  # 1 (grey) or 3 (RGB)
        w_dim: int = 512,  # size of w
        channel_base: int = 32768,  # channels at resolution r: min(channel_base / r, channel_max)
        channel_max: int = 512,
        style: str = "modulated",  # "modulated" (StyleGAN2) or "adain" (StyleGAN)
    ):
        super().__init__()
        self.resolution, self.img_channels, self.w_dim = resolution, img_channels, w_dim
        if style not in BLOCKS:
            raise GanlibError(f"style {style!r}: use one of {', '.join(BLOCKS)}.")
        ch = lambda r: feature_channels(r, channel_base, channel_max)
        resolutions = [2 ** k for k in range(2, int(math.log2(resolution)) + 1)]  # 4, 8, ..., resolution
        self.blocks = nn.ModuleList([BLOCKS[style](ch(max(r // 2, 4)), ch(r), w_dim, r, img_channels)
                                     for r in resolutions])
        self.num_ws = sum(b.num_conv for b in self.blocks) + 1  # = 2 log2(resolution) - 2

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        check_shape(ws, (None, self.num_ws, self.w_dim), "ws", "one w per layer: broadcast(w, G.num_ws)")
        x = img = None
        w_idx = 0
        for block in self.blocks:
            x, img = block(x, img, ws[:, w_idx: w_idx + block.num_conv + 1], noise_mode)
            w_idx += block.num_conv  # the ToRGB's row is also the next block's first conv's row
        return img


class Generator(nn.Module):
    """The style-based generator: z [N, z_dim] -> images [N, img_channels, resolution, resolution].

    ``G.mapping(z)`` -> w [N, w_dim]; ``G.synthesis(ws)`` with ws [N, G.num_ws, w_dim]; ``G(z, truncation_psi,
    noise_mode)`` does both. ``G.w_avg`` is the running mean of w (updated while training).
    """

    def __init__(
        self,
        resolution: int = 32,  # output side length, a power of two in [4, 1024]
        img_channels: int = 3,  # 1 (grey) or 3 (RGB)
        z_dim: int = 512,  # latent size
        w_dim: int = 512,  # intermediate latent size
        mapping_layers: int = 8,  # depth of the mapping network
        mapping_lr_mul: float = 0.01,  # learning-rate multiplier of the mapping network
        w_avg_beta: float = 0.995,  # decay of the running mean of w
        channel_base: int = 32768,  # channels at resolution r: min(channel_base / r, channel_max)
        channel_max: int = 512,
        style: str = "modulated",  # "modulated" (StyleGAN2) or "adain" (StyleGAN)
    ):
        super().__init__()
        check_resolution(resolution, 4, 1024)
        self.resolution, self.img_channels, self.z_dim, self.w_dim, self.style = (
            resolution, img_channels, z_dim, w_dim, style)
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, mapping_lr_mul, w_avg_beta)
        self.synthesis = SynthesisNetwork(resolution, img_channels, w_dim, channel_base, channel_max, style)
        self.num_ws = self.synthesis.num_ws

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                noise_mode: str = "random") -> torch.Tensor:
        ws = broadcast(self.mapping(z), self.num_ws)  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            ws = truncate(ws, self.w_avg, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode)

    def sample(self, n: int, seed: int = 0, truncation: float | None = None, truncation_cutoff: int | None = None,
               noise_mode: str = "const", batch: int = 256) -> tuple[torch.Tensor, None]:
        """`n` images on the CPU, deterministic given `seed` (`models.draw`), and None (no labels): with the
        truncation trick in W at psi = `truncation` (None: 1, off) on the first `truncation_cutoff` layers
        (None: all), and the constant noise maps (`noise_mode`), so that a seed always gives the same images."""
        psi = 1.0 if truncation is None else truncation
        if not 0 <= psi <= 1:  # NaN and inf fail this too
            raise GanlibError(f"truncation psi {psi!r}: use a number from 0 (every sample the average image) to 1 "
                              f"(no truncation); 0.7 is the StyleGAN papers' usual choice.")
        return draw(self, n, seed, batch=batch, forward=lambda z, _: self(z, psi, truncation_cutoff, noise_mode))

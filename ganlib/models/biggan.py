"""BigGAN (Brock et al. 2019), following the authors' BigGAN-PyTorch, at any power-of-two resolution 16-256.

Generator G(z, y): the latent z is split into equal chunks (the *hierarchical* latent): the first chunk goes
through a linear layer to a 4x4 feature map; each residual up-sampling block gets the next chunk,
concatenated with a *shared* class embedding, as the condition vector of its two conditional batch norms.
Block: CBN -> ReLU -> 2x nearest up -> conv3x3 -> CBN -> ReLU -> conv3x3, plus a 1x1 conv skip of the
up-sampled input. Then BN -> ReLU -> conv3x3 -> tanh.

Discriminator D(x, y): residual down-sampling blocks (pre-activation ReLU except in the first, 2x2 average
pooling), one more block at 4x4 without pooling, ReLU, global *sum* pooling, then
    D(x, y) = w^T h + embed(y)^T h        (the projection discriminator, Miyato & Koyama 2018).

Both networks are spectrally normalised (`spectral.spectral_norm`, one power iteration per training-mode
forward in the paper's order; every conv, linear and D's class embedding, but not G's shared
embedding, which the authors found "randomly cripples G"); SAGAN self-attention blocks sit at the
resolutions listed in `attention`. Channels at resolution r: width * min(resolution / r, 16) (the paper's
plan at 128x128). Weights start orthogonal (``--G_init ortho``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import layers, spectral
from ..errors import GanlibError, check_images, check_resolution, check_shape
from ..layers import ConditionalBatchNorm2d, SelfAttention
from . import draw

__all__ = [
    "SN_EPS", "SAMPLING_STATISTICS", "channels_at", "add_spectral_norm", "orthogonal_init", "truncated_z",
    "batch_norms", "standing_statistics", "GBlock", "DBlock", "Generator", "forward_with_batch_statistics",
    "Discriminator"
]

SN_EPS = 1e-6  # spectral-norm epsilon of the BigGAN-PyTorch launch scripts
SAMPLING_STATISTICS = ("standing", "running", "batch")  # the batch-norm statistics G can sample with (`sample`)


def channels_at(r: int, resolution: int, width: int) -> int:
    """Feature channels at resolution r in a net whose image resolution is `resolution`."""
    return width * min(resolution // r, 16)


def add_spectral_norm(module: nn.Module, skip: tuple[nn.Module, ...] = ()) -> None:
    """Spectrally normalise every conv, linear and embedding weight inside `module`, except those in `skip`."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)) and not any(m is s for s in skip):
            spectral.spectral_norm(m, eps=SN_EPS)


def orthogonal_init(module: nn.Module) -> None:
    """BigGAN's initialisation of one module (apply it with `G.apply`): orthogonal weights, zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)):
        nn.init.orthogonal_(module.weight)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


def truncated_z(n: int, dim: int, threshold: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Latents [n, dim] from the standard normal truncated to [-threshold, threshold] (the truncation trick).

    Every value outside the interval is *resampled* until it falls inside, which gives exactly the normal
    density restricted to the interval. Clipping instead would pile the outliers up at +-threshold.
    """
    if not threshold > 0:
        raise GanlibError(f"truncation threshold {threshold!r}: use a positive number (smaller = closer to the "
                          f"typical image, larger = more variety; 2 leaves 95 % of draws untouched).")
    z = torch.randn(n, dim, generator=generator)
    outside = z.abs() > threshold
    while outside.any():
        z[outside] = torch.randn(int(outside.sum()), generator=generator)
        outside = z.abs() > threshold
    return z


@torch.no_grad()
def batch_norms(G: nn.Module) -> list[nn.Module]:
    """G's batch-norm layers (those inside its conditional batch norms included)."""
    return [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def standing_statistics(G: nn.Module, batches: int = 16, batch_size: int = 64, truncation: float | None = None,
                        seed: int = 0) -> nn.Module:
    """Recompute the batch-norm running statistics of G from `batches` fresh batches in training mode.

    BigGAN's "standing statistics": an EMA generator's averaged weights do not match the running statistics
    the training G collected, so they are measured again for the weights in use, as a plain average over the
    batches, from z ~ N(0, I) or, with `truncation`, from the truncated normal the samples will use (the
    statistics depend on the threshold). Only the norms run in training mode (spectral norm's power
    iteration does not move). Leaves G in eval mode and returns it.
    """
    norms = batch_norms(G)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    g = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    G.eval()
    for m in norms:
        m.train()
    for _ in range(batches):
        z = truncated_z(batch_size, G.z_dim, truncation, g) if truncation else torch.randn(batch_size, G.z_dim,
                                                                                          generator=g)
        labels = torch.randint(G.num_classes, (batch_size,), generator=g)
        G(z.to(device), labels.to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return G.eval()


class GBlock(nn.Module):
    """Residual up-sampling block: [N, in, R, R] and condition [N, cond_dim] -> [N, out, 2R, 2R]."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int):
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(in_channels, cond_dim)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn2 = ConditionalBatchNorm2d(out_channels, cond_dim)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, c)), scale_factor=2, mode="nearest")
        h = self.conv1(h)
        h = self.conv2(F.relu(self.bn2(h, c)))
        return h + self.skip(F.interpolate(x, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    """Residual down-sampling block: [N, in, R, R] -> [N, out, R/2, R/2] (or R without `downsample`)."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool = True, preactivation: bool = True):
        super().__init__()
        self.downsample, self.preactivation = downsample, preactivation
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)  # "wide" D: hidden = out channels
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.learnable_skip = in_channels != out_channels or downsample
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if self.learnable_skip else None

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.preactivation:  # the repo's orders; a 1x1 conv and average pooling commute anyway
            x = self.skip(x) if self.learnable_skip else x
            return F.avg_pool2d(x, 2) if self.downsample else x
        x = F.avg_pool2d(x, 2) if self.downsample else x
        return self.skip(x) if self.learnable_skip else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x  # out of place: x is still needed by the shortcut
        h = self.conv2(F.relu(self.conv1(h)))
        h = F.avg_pool2d(h, 2) if self.downsample else h
        return h + self.shortcut(x)


class Generator(nn.Module):
    """z [N, z_dim] and labels [N] -> images [N, img_channels, resolution, resolution] in [-1, 1]."""

    def __init__(
        self,
        resolution: int = 32,  # output side length, a power of two in [16, 256]
        img_channels: int = 3,  # 1 (grey) or 3 (RGB)
        num_classes: int = 10,  # classes of the labels y
        z_dim: int = 60,  # latent size; split into (blocks + 1) equal chunks (BigGAN at 128: 120 = 6 x 20)
        width: int = 32,  # channels at the output resolution (BigGAN's ch: 96 in the paper at 128)
        shared_dim: int = 128,  # size of the shared class embedding (BigGAN: 128)
        attention: tuple[int, ...] = (),  # resolutions after whose block a self-attention block sits (BigGAN: 64)
        spectral_norm: bool = True,  # spectral norm on every conv/linear (BigGAN: on in G too)
    ):
        super().__init__()
        check_resolution(resolution, 16, 256)
        num_blocks = int(math.log2(resolution)) - 2  # 4 -> 8 -> ... -> resolution
        if z_dim % (num_blocks + 1):
            raise GanlibError(f"z_dim {z_dim} must split into {num_blocks + 1} equal chunks at resolution "
                              f"{resolution} (one for the 4x4 input, one per block): use a multiple of "
                              f"{num_blocks + 1}, e.g. {(num_blocks + 1) * max(1, z_dim // (num_blocks + 1))}.")
        self.resolution, self.img_channels, self.num_classes, self.z_dim = resolution, img_channels, num_classes, z_dim
        self.chunk = z_dim // (num_blocks + 1)
        self.attention = tuple(attention)
        ch = lambda r: channels_at(r, resolution, width)
        self.shared = nn.Embedding(num_classes, shared_dim)
        self.linear = nn.Linear(self.chunk, ch(4) * 4 * 4)
        self.blocks = nn.ModuleList()
        self.attn = nn.ModuleDict()
        r = 4
        while r < resolution:
            self.blocks.append(GBlock(ch(r), ch(2 * r), shared_dim + self.chunk))
            r *= 2
            if r in self.attention:
                self.attn[str(r)] = SelfAttention(ch(r))
        self.out_bn = nn.BatchNorm2d(ch(resolution))
        self.out_conv = nn.Conv2d(ch(resolution), img_channels, 3, padding=1)
        self.apply(orthogonal_init)
        if spectral_norm:
            add_spectral_norm(self, skip=(self.shared,))

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_shape(z, (None, self.z_dim), "z", f"latents are [N, z_dim={self.z_dim}]")
        check_shape(labels, (z.shape[0],), "BigGAN's labels", "give one class per latent")
        chunks = z.split(self.chunk, dim=1)  # (blocks + 1) x [N, chunk]
        y = self.shared(labels)  # [N, shared_dim]
        x = self.linear(chunks[0]).reshape(z.shape[0], -1, 4, 4)  # [N, ch(4), 4, 4]
        r = 4
        for block, z_i in zip(self.blocks, chunks[1:]):
            x = block(x, torch.cat([y, z_i], dim=1))  # condition [N, shared_dim + chunk]
            r *= 2
            if str(r) in self.attn:
                x = self.attn[str(r)](x)
        x = self.out_conv(F.relu(self.out_bn(x)))
        return torch.tanh(x)  # [N, C, R, R]

    def sample(self, n: int, seed: int = 0, truncation: float | None = None, labels: torch.Tensor | None = None,
               statistics: str = "standing", batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` images on the CPU and their labels (`labels` [n], or uniform), deterministic given `seed`
        (`models.draw`).

        Args:
            truncation: z from the normal truncated at this threshold (the truncation trick; None: plain normal).
            statistics: the batch-norm statistics that normalise the samples, one of `SAMPLING_STATISTICS`:
                "standing" (the default) first measures them anew for G's weights and this truncation
                (`standing_statistics`, which replaces G's running statistics); "running" uses those G brought
                from training; "batch" normalises each forward batch with its own mean and variance (G's running
                statistics stay as they are).
        """
        if statistics not in SAMPLING_STATISTICS:
            raise GanlibError(f"statistics {statistics!r}: BigGAN samples with one of {SAMPLING_STATISTICS}.")
        training = self.training
        if statistics == "standing":
            standing_statistics(self, truncation=truncation, seed=seed + 1)  # leaves G in eval mode
        self.train(training)
        z = None if truncation is None else truncated_z(n, self.z_dim, truncation,
                                                        generator=torch.Generator().manual_seed(seed))
        forward = (lambda z, y: forward_with_batch_statistics(self, z, y)) if statistics == "batch" else None
        return draw(self, n, seed, labels, batch, forward=forward, z=z)


def forward_with_batch_statistics(G: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """G(z, labels) with every batch norm normalising by this batch's own mean and variance, as in training,
    without updating its running statistics; G is otherwise in eval mode."""
    norms = batch_norms(G)
    for m in norms:
        m.train()
        m.track_running_stats = False  # training mode without running buffers: batch statistics, nothing kept
    try:
        return G(z, labels)
    finally:
        for m in norms:
            m.track_running_stats = True
            m.eval()


class Discriminator(nn.Module):
    """images [N, img_channels, resolution, resolution] and labels [N] -> logits [N]."""

    def __init__(
        self,
        resolution: int = 32,  # input side length, a power of two in [16, 256]
        img_channels: int = 3,  # 1 (grey) or 3 (RGB)
        num_classes: int = 10,  # classes of the labels y
        width: int = 32,  # channels after the first block (BigGAN's ch)
        attention: tuple[int, ...] = (),  # resolutions after whose block a self-attention block sits
        spectral_norm: bool = True,  # spectral norm on every conv/linear and the class embedding
    ):
        super().__init__()
        check_resolution(resolution, 16, 256)
        self.resolution, self.img_channels, self.num_classes = resolution, img_channels, num_classes
        self.attention = tuple(attention)
        ch = lambda r: channels_at(r, resolution, width)
        self.blocks = nn.ModuleList()
        self.attn = nn.ModuleDict()
        in_ch, r = img_channels, resolution
        while r > 4:  # resolution -> ... -> 4
            self.blocks.append(DBlock(in_ch, ch(r), downsample=True, preactivation=r != resolution))
            in_ch, r = ch(r), r // 2
            if r in self.attention:
                self.attn[str(r)] = SelfAttention(in_ch)
        self.blocks.append(DBlock(in_ch, ch(4), downsample=False))  # the last block keeps 4x4
        self.linear = nn.Linear(ch(4), 1)
        self.embed = nn.Embedding(num_classes, ch(4))
        self.apply(orthogonal_init)
        if spectral_norm:
            add_spectral_norm(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_images(x, self.img_channels, self.resolution, "the BigGAN discriminator",
                     dtype=next(self.parameters()).dtype)
        check_shape(labels, (x.shape[0],), "BigGAN's labels", "give one class per image")
        h = x
        for block in self.blocks:
            h = block(h)
            if block.downsample and str(h.shape[-1]) in self.attn:
                h = self.attn[str(h.shape[-1])](h)
        h = F.relu(h).sum(dim=(2, 3))  # global sum pooling: [N, ch(4)]
        return layers.projection_logits(h, labels, self.embed, self.linear)  # [N]

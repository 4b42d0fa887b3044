"""Datasets, behind one entry point: ``load(name, resolution=...)``.

Offline, bundled or generated (what CI, exam rooms and trains can use):
    ``ring8``   8 Gaussians on a circle of radius 1, std 0.01 (the PacGAN/VEEGAN protocol)
    ``grid25``  25 Gaussians on a 5x5 grid with spacing 2, std 0.05
    ``digits``  scikit-learn's 1797 bundled 8x8 digits with labels, resized to any power of two
    ``shapes``  procedural RGB shapes with known factors (shape, colour, background, position, size,
                rotation), rendered at any power-of-two resolution; labels are the shape class

The downloaded sets (``mnist``, ``fashion-mnist``, ``cifar10``) and ``folder:PATH`` (a folder of images) are
read by the course's tools, `gancourse.datasets.load`, into the same containers.

Every dataset is held in memory and indexed by batches: ``data.batch(idx)`` returns ``(x, y)`` with images
as float32 in [-1, 1] of shape [B, C, R, R] (or points [B, 2]) and labels [B] or None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from .errors import GanlibError, check_resolution
from .shapes import SHAPE_NAMES, render_shapes, shape_factors

__all__ = ["PointData", "ImageData", "to_uint8", "resize_images", "ring8_centres", "grid25_centres",
           "TOY_MIXTURES", "toy_mixture", "digits", "SHAPES_SIZE", "ShapesData", "shapes", "OFFLINE", "load"]


# ----------------------------------------------------------------------------------------------------------
# Containers


@dataclass
class PointData:
    """A 2-D Gaussian mixture: points, the mode each point came from, the mode centres and their std."""

    name: str
    points: torch.Tensor  # [N, 2] float32
    modes: torch.Tensor  # [N] int64, index into centres
    centres: torch.Tensor  # [K, 2] float32
    std: float
    kind: str = "points"
    labels: torch.Tensor | None = None  # [N] int64 class labels, or None (see `labelled`)
    num_classes: int = 0

    def __len__(self) -> int:
        return self.points.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        return (2,)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.points[idx], (self.labels[idx] if self.labels is not None else None)

    def labelled(self) -> PointData:
        """The same points with each one's mode as its class label, for class-conditional toy GANs."""
        return replace(self, labels=self.modes, num_classes=len(self.centres))


@dataclass
class ImageData:
    """Images kept as uint8 [N, C, R, R] (compact), served as float32 in [-1, 1]."""

    name: str
    images: torch.Tensor  # [N, C, R, R] uint8
    labels: torch.Tensor | None = None  # [N] int64
    num_classes: int = 0
    class_names: list[str] = field(default_factory=list)
    kind: str = "images"

    def __post_init__(self):
        assert self.images.dtype == torch.uint8 and self.images.ndim == 4, self.images.shape
        assert self.labels is None or self.labels.shape == (self.images.shape[0],)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.images[idx].float().div_(127.5).sub_(1.0)  # [B, C, R, R] in [-1, 1]
        return x, (self.labels[idx] if self.labels is not None else None)

    def subset(self, idx: torch.Tensor) -> ImageData:
        labels = self.labels[idx] if self.labels is not None else None
        return ImageData(self.name, self.images[idx], labels, self.num_classes, self.class_names)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8 in [0, 255] (same shape)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def resize_images(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize uint8 images [N, C, H, W] to [N, C, R, R]: bilinear, antialiased when shrinking."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    out = []
    for chunk in images.split(4096):
        x = F.interpolate(chunk.float(), size=(resolution, resolution), mode="bilinear",
                          align_corners=False, antialias=resolution < chunk.shape[-1])
        out.append(x.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------------------
# Toy 2-D mixtures


def ring8_centres(radius: float = 1.0) -> torch.Tensor:
    """8 distinct centres at angles 2*pi*k/8 (not linspace(0, 2*pi, 8), which repeats the first one)."""
    angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def grid25_centres(spacing: float = 2.0) -> torch.Tensor:
    """The 5x5 grid (-4 + 2i, -4 + 2j), i, j in 0..4."""
    ticks = (torch.arange(5, dtype=torch.float32) - 2) * spacing
    return torch.cartesian_prod(ticks, ticks)


TOY_MIXTURES = {"ring8": (ring8_centres, 0.01), "grid25": (grid25_centres, 0.05)}


def toy_mixture(name: str, n: int = 100_000, seed: int = 0) -> PointData:
    """`n` points from an equal-weight mixture of isotropic Gaussians, deterministic from `seed`."""
    make_centres, std = TOY_MIXTURES[name]
    centres = make_centres()
    g = torch.Generator().manual_seed(seed)
    modes = torch.randint(len(centres), (n,), generator=g)
    points = centres[modes] + std * torch.randn(n, 2, generator=g)
    return PointData(name, points, modes, centres, std)


# ----------------------------------------------------------------------------------------------------------
# Digits (bundled with scikit-learn)


def digits(resolution: int | None = None, split: str = "train") -> ImageData:
    """scikit-learn's 8x8 digits in [0, 255], resized to `resolution`.

    Splits are stratified and fixed: ``train`` (80 %, 1438 images), ``test`` (the other 20 %, 359), ``all``.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().mul(255 / 16).round().to(torch.uint8)[:, None]  # [1797,1,8,8]
    labels = torch.from_numpy(bunch.target).long()
    idx = _stratified_split(labels, split, test_fraction=0.2)
    images = resize_images(images[idx], resolution or 8)
    return ImageData("digits", images, labels[idx], 10, [str(i) for i in range(10)])


def _stratified_split(labels: torch.Tensor, split: str, test_fraction: float) -> torch.Tensor:
    if split == "all":
        return torch.arange(len(labels))
    if split not in ("train", "test"):
        raise GanlibError(f"split {split!r} does not exist: use 'train', 'test' or 'all'.")
    g = torch.Generator().manual_seed(1234)  # fixed forever: the split must not move between runs
    test = []
    for c in labels.unique():
        members = (labels == c).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=g)]
        test.append(members[: round(test_fraction * len(members))])
    is_test = torch.zeros(len(labels), dtype=torch.bool)
    is_test[torch.cat(test)] = True
    return (is_test if split == "test" else ~is_test).nonzero().squeeze(1)


# ----------------------------------------------------------------------------------------------------------
# Shapes (procedural, with known factors)

SHAPES_SIZE = {"train": 20_000, "test": 2_000}  # images per split
_SHAPES_SPLIT_SEED = {"train": 0, "test": 1_000_003}  # added to the seed: the splits never share an image


@dataclass
class ShapesData(ImageData):
    """`ImageData` plus the factors each image was drawn from: `factors[name]` is a tensor [N]."""

    factors: dict[str, torch.Tensor] = field(default_factory=dict)

    def subset(self, idx: torch.Tensor) -> ShapesData:
        return ShapesData(self.name, self.images[idx], self.labels[idx], self.num_classes, self.class_names,
                          factors={k: v[idx] for k, v in self.factors.items()})


_SHAPES_CACHE: dict[tuple[int, str, int], ShapesData] = {}


def shapes(resolution: int | None = None, split: str = "train", seed: int = 0) -> ShapesData:
    """Procedural shapes with known factors, rendered at `resolution` (default 32), RGB.

    Each image is one shape on a plain background, drawn from independent factors (`factors[name]`, [N]):
        ``shape``       class 0..2: circle, square, triangle (also the `labels`)
        ``colour``      0..5: red, green, blue, yellow, magenta, cyan (`shapes.SHAPE_COLOURS`)
        ``background``  0..2: black, grey, navy (`shapes.SHAPE_BACKGROUNDS`)
        ``x``, ``y``    centre, as fractions of the image side (the shape stays inside the image)
        ``size``        radius in [0.18, 0.30] of the image side
        ``rotation``    angle in [0, 2 pi) (visible up to the shape's symmetry: none for the circle)

    Splits: ``train`` (20,000 images) and ``test`` (2,000), deterministic from `seed`; a split is rendered
    once per (resolution, split, seed) and kept in memory.
    """
    resolution = resolution or 32
    if split not in SHAPES_SIZE:
        raise GanlibError(f"split {split!r} does not exist for shapes: use 'train' or 'test'.")
    key = (resolution, split, seed)
    if key not in _SHAPES_CACHE:
        factors = shape_factors(SHAPES_SIZE[split], seed + _SHAPES_SPLIT_SEED[split])
        images = render_shapes(factors, resolution)
        _SHAPES_CACHE[key] = ShapesData("shapes", images, factors["shape"].clone(), len(SHAPE_NAMES),
                                        list(SHAPE_NAMES), factors=factors)
    cached = _SHAPES_CACHE[key]
    return ShapesData(cached.name, cached.images, cached.labels, cached.num_classes, cached.class_names,
                      factors=dict(cached.factors))


# ----------------------------------------------------------------------------------------------------------
# The entry point

OFFLINE = ("ring8", "grid25", "digits", "shapes")


def load(name: str, resolution: int | None = None, split: str = "train", seed: int = 0) -> PointData | ImageData:
    """Load an offline dataset by name (see the module docstring for the list).

    Args:
        name: a name from `OFFLINE`.
        resolution: image side length, a power of two (default: the dataset's own).
        split: ``train``, ``test`` (held-out images, for metrics) or ``all`` (digits only).
        seed: seed of the generated toy mixtures and shapes.
    """
    if resolution is not None:
        check_resolution(resolution, low=4, high=1024)
    if name in TOY_MIXTURES:
        return toy_mixture(name, seed=seed)
    if name == "digits":
        return digits(resolution, split)
    if name == "shapes":
        return shapes(resolution, split, seed)
    raise GanlibError(f"unknown dataset {name!r}: use one of {', '.join(OFFLINE)} (downloaded sets and "
                      f"folder:PATH load through gancourse.datasets.load).")

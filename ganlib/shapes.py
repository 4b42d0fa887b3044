"""The `shapes` dataset's drawing: the factors of its images (shape, colour, background, position, size,
rotation) and their rendering, vectorised over the batch. `data.shapes` (``data.load("shapes")``) draws a
split with them and holds it in memory."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SHAPE_NAMES = ["circle", "square", "triangle"]
SHAPE_COLOURS = {  # name: RGB in [0, 1]; saturated and bright, so every one stands out on every background
    "red": (0.9, 0.15, 0.15), "green": (0.15, 0.8, 0.2), "blue": (0.2, 0.35, 0.95),
    "yellow": (0.95, 0.85, 0.15), "magenta": (0.85, 0.2, 0.85), "cyan": (0.15, 0.85, 0.9),
}
SHAPE_BACKGROUNDS = {"black": (0.05, 0.05, 0.05), "grey": (0.35, 0.35, 0.35), "navy": (0.08, 0.1, 0.3)}


__all__ = ["SHAPE_NAMES", "SHAPE_COLOURS", "SHAPE_BACKGROUNDS", "shape_factors", "render_shapes"]


def shape_factors(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Draw the factors of `n` shapes images, deterministically from `seed` (see `shapes`)."""
    g = torch.Generator().manual_seed(seed)
    shape = torch.randint(len(SHAPE_NAMES), (n,), generator=g)
    colour = torch.randint(len(SHAPE_COLOURS), (n,), generator=g)
    background = torch.randint(len(SHAPE_BACKGROUNDS), (n,), generator=g)
    size = 0.18 + 0.12 * torch.rand(n, generator=g)  # radius, as a fraction of the image side
    margin = size + 0.03  # the whole shape stays inside the image
    x = margin + (1 - 2 * margin) * torch.rand(n, generator=g)
    y = margin + (1 - 2 * margin) * torch.rand(n, generator=g)
    rotation = 2 * math.pi * torch.rand(n, generator=g)
    return {"shape": shape, "colour": colour, "background": background, "x": x, "y": y, "size": size,
            "rotation": rotation}


def render_shapes(factors: dict[str, torch.Tensor], resolution: int) -> torch.Tensor:
    """Draw shapes from their factors: uint8 [N, 3, R, R], antialiased by supersampling (at least 64x64
    samples per image), vectorised over the batch."""
    n = len(factors["shape"])
    ss = max(2, 64 // resolution)  # samples per pixel along each axis
    side = resolution * ss
    t = (torch.arange(side, dtype=torch.float32) + 0.5) / side  # sample positions in (0, 1)
    palette = torch.tensor(list(SHAPE_COLOURS.values()))  # [6, 3]
    backgrounds = torch.tensor(list(SHAPE_BACKGROUNDS.values()))  # [3, 3]
    out = torch.empty(n, 3, resolution, resolution, dtype=torch.uint8)
    chunk = max(1, 2**22 // (side * side))
    for start in range(0, n, chunk):
        f = {k: v[start: start + chunk] for k, v in factors.items()}
        b = len(f["shape"])
        dx = t[None, None, :] - f["x"][:, None, None]  # [B, 1, S]
        dy = t[None, :, None] - f["y"][:, None, None]  # [B, S, 1]
        cos, sin = f["rotation"].cos()[:, None, None], f["rotation"].sin()[:, None, None]
        r = f["size"][:, None, None]
        u, v = (cos * dx + sin * dy) / r, (-sin * dx + cos * dy) / r  # [B, S, S], in the shape's own frame
        circle = u * u + v * v <= 1.0
        square = torch.maximum(u.abs(), v.abs()) <= 0.8  # half-side 0.8 r: about a circle's area
        # equilateral triangle, circumradius 1.2 r: inside all three edges (inradius 0.6 r)
        tri = torch.ones_like(circle)
        for k in range(3):
            a = math.pi / 2 + 2 * math.pi * k / 3
            tri &= u * math.cos(a) + v * math.sin(a) >= -0.6
        inside = torch.stack([circle, square, tri], dim=1)  # [B, 3, S, S]
        mask = inside.gather(1, f["shape"][:, None, None, None].expand(b, 1, side, side)).float()
        cover = F.avg_pool2d(mask, ss)  # [B, 1, R, R] share of the pixel inside the shape
        fg = palette[f["colour"]][:, :, None, None]  # [B, 3, 1, 1]
        bg = backgrounds[f["background"]][:, :, None, None]
        img = bg + cover * (fg - bg)  # [B, 3, R, R] in [0, 1]
        out[start: start + b] = (img * 255).round().to(torch.uint8)
    return out

"""What chapter 03 measures on `shapes`, whose factors are known: the factors read back off a generator's images,
which of them follow the coarse and which the fine styles when styles are mixed, and the perceptual path length."""

from __future__ import annotations

import copy

import torch

from ganlib import shapes
from ganlib.metrics.geometry import shape_geometry
from ganlib.models.stylegan import broadcast, mix_styles
from ganlib.viz import lerp, slerp

from .judges import ShapesJudge, classify

__all__ = ["FACTORS", "read_factors", "mixing_shares", "perceptual_path_length"]

FACTORS = ("shape", "colour", "background", "position")


@torch.no_grad()
def read_factors(images: torch.Tensor, judge: ShapesJudge) -> dict[str, torch.Tensor]:
    """Read the factors of `shapes` images [N, 3, R, R] in [-1, 1] back off the pixels.

    ``shape`` and ``colour`` (class indices [N]) are the most likely ones according to the shapes judge's
    (shape, colour) classifier; ``background`` [N] is the palette background nearest to the median colour of
    the image's border, and ``position`` [N, 2] the centroid (x, y, as fractions of the side) of the shape,
    both as `shape_geometry` measures them (NaN where it finds no shape).
    """
    images = images.float().cpu()
    shape_p, colour_p = judge.shape_colour(classify(judge.model, judge.prepare(images))[1])  # [N, 3], [N, 6]
    geometry = shape_geometry(images)
    palette = torch.tensor(list(shapes.SHAPE_BACKGROUNDS.values())) * 2 - 1  # [B, 3] in [-1, 1]
    return {"shape": shape_p.argmax(1), "colour": colour_p.argmax(1),
            "background": torch.cdist(geometry["background"], palette).argmin(dim=1),
            "position": torch.stack([geometry["x"], geometry["y"]], dim=1)}


@torch.no_grad()
def mixing_shares(G, judge, crossover: int, n: int = 1000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Which factors follow the coarse latent and which the fine one when styles are mixed at `crossover`.

    For n pairs of latents (a, b): images A = G(a), B = G(b) and the mix M with rows [0, crossover) of a's ws
    and the rest of b's (constant noise throughout). For each factor, over the pairs where A and B differ in
    it (categorical factors) or always (position), the share of mixes whose factor equals A's ("coarse"),
    B's ("fine") or neither; for position, "coarse" when M's centroid is nearer A's than B's. Returns
    {factor: {"coarse": share, "fine": share, "pairs": count}}.
    """
    g = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    za, zb = (torch.randn(n, G.z_dim, generator=g).to(device) for _ in range(2))
    ws_a, ws_b = broadcast(G.mapping(za), G.num_ws), broadcast(G.mapping(zb), G.num_ws)
    make = lambda ws: G.synthesis(ws, noise_mode="const").cpu()
    fa, fb, fm = (read_factors(make(ws), judge) for ws in (ws_a, ws_b, mix_styles(ws_a, ws_b, crossover)))
    shares = {}
    for name in FACTORS:
        if name == "position":
            coarse = (fm[name] - fa[name]).norm(dim=1) < (fm[name] - fb[name]).norm(dim=1)
            shares[name] = {"coarse": float(coarse.float().mean()), "fine": float((~coarse).float().mean()),
                            "pairs": n}
            continue
        differ = fa[name] != fb[name]
        m = int(differ.sum())
        shares[name] = {"coarse": float((fm[name] == fa[name])[differ].float().mean()) if m else float("nan"),
                        "fine": float((fm[name] == fb[name])[differ].float().mean()) if m else float("nan"),
                        "pairs": m}
    return shares


@torch.no_grad()
def perceptual_path_length(G, judge, space: str = "w", n: int = 1000, eps: float = 1e-4, seed: int = 0) -> float:
    """Perceptual path length (StyleGAN, section 4.2) with the course's own features instead of VGG/LPIPS.

    For n random pairs of latents and t ~ U(0, 1): the squared distance between the judge classifier's
    features of the images at t and t + eps along the path, divided by eps^2; paths are slerp in Z
    (``space="z"``) or straight lines in W (``space="w"``). As in the paper, the values outside the 1st and
    99th percentiles are dropped before averaging. Lower means smoother: small steps make small changes.
    G and the features run in float64 (the differences are tiny).
    """
    assert space in ("z", "w"), f"space must be 'z' or 'w', got {space!r}"
    G = copy.deepcopy(G).cpu().double().eval()
    model = copy.deepcopy(judge.model).double()
    features = lambda images: model.features(judge.prepare(images).double())  # the judge sees 16x16 images
    g = torch.Generator().manual_seed(seed)
    z0, z1 = torch.randn(n, G.z_dim, generator=g).double(), torch.randn(n, G.z_dim, generator=g).double()
    t = torch.rand(n, generator=g).double()
    ends = (z0, z1) if space == "z" else (G.mapping(z0), G.mapping(z1))
    path = slerp if space == "z" else lerp
    points = torch.stack([path(a, b, torch.stack([ti, ti + eps])) for a, b, ti in zip(*ends, t)])  # [n, 2, D]
    w = points.flatten(0, 1)  # [2n, D]: each pair's two points, next to each other
    ws = broadcast(G.mapping(w) if space == "z" else w, G.num_ws)
    images = torch.cat([G.synthesis(chunk, noise_mode="const") for chunk in ws.split(250)])  # [2n, C, R, R]
    f = torch.cat([features(chunk) for chunk in images.split(250)]).reshape(n, 2, -1)
    dist = (f[:, 0] - f[:, 1]).square().sum(dim=1) / eps ** 2  # [n]
    low, high = torch.quantile(dist, 0.01), torch.quantile(dist, 0.99)
    return float(dist[(dist >= low) & (dist <= high)].mean())

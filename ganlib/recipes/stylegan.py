"""StyleGAN2 (and StyleGAN's AdaIN generator, with G's ``style="adain"``) on shapes, digits or an image folder.

Training follows StyleGAN2 (Karras et al. 2020; the authors' StyleGAN2-ADA code): non-saturating logistic
loss, Adam (0, 0.99), R1 on real images every 16 D steps, path-length regularisation (weight 2) every 4 G
steps on half the batch, StyleGAN2's Adam correction for lazy regularisation (lr * k/(k+1), betas^(k/(k+1))),
style-mixing regularisation with probability 0.9, and sampling from an EMA of G.

What the small profiles change, and why: 2 mapping layers instead of 8 (as StyleGAN2-ADA's own small-data
configurations), narrow layers, w of 32 to 128 dimensions, a short EMA half-life (the runs are short). R1 gamma is
1 (StyleGAN2 uses 10 on FFHQ; StyleGAN2-ADA's "auto" rule, 0.0002 res^2 / batch, gives 0.003 here): in a cpu run
with 0.2 (and path-length regularisation on), D's logits ran to about +-3 and G's share of recognised shapes fell
from 0.58 at step 500 to 0.38 at step 1,000.

The cpu preset (shapes at 32x32, 2,000 steps of 64 images) was tuned in short runs scored with the shapes judge,
on one thread: a step of 64 images costs about 1.4x a step of 32 (the layers are small), so batch 64 shows
nearly twice the images in the same time; path-length regularisation is off (as in StyleGAN2-ADA's small-image
`cifar` configuration), which saves about an eighth of a step; and the EMA half-life is 1 kimg (16 steps): G still
changes quickly, and with 4 kimg G_ema recognised 2% of the shapes where G itself recognised 58% (step 500).
"""

from __future__ import annotations

import torch

from ..models.stylegan import mix_styles
from ..stylegan_training import StyleGANTrainer

FAMILY = "stylegan"
TRAINER = StyleGANTrainer

_TRAIN = dict(loss="nonsaturating", lr_g=0.002, lr_d=0.002, betas=(0.0, 0.99), r1_gamma=1.0, r1_every=16)
_TRAINER = dict(style_mixing=0.9, pl_weight=2.0, pl_every=4, pl_batch_shrink=2, pl_decay=0.01)  # StyleGANOptions

PRESETS = {
    "smoke": {"data": "shapes", "resolution": 16, "trainer": _TRAINER,
              "G": dict(z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32),
              "D": dict(channel_base=256, channel_max=32),
              "train": dict(_TRAIN, steps=8, batch_size=8, ema_half_life_kimg=0.5, log_every=4)},
    "cpu": {"data": "shapes", "resolution": 32, "trainer": dict(_TRAINER, pl_weight=0.0),
            "G": dict(z_dim=64, w_dim=64, mapping_layers=2, channel_base=512, channel_max=64),
            "D": dict(channel_base=512, channel_max=64),
            "train": dict(_TRAIN, steps=2000, batch_size=64, ema_half_life_kimg=1.0, log_every=100,
                          sample_every=500, checkpoint_every=500)},
    "gpu": {"data": "shapes", "resolution": 32, "trainer": _TRAINER,
            "G": dict(z_dim=128, w_dim=128, mapping_layers=8, channel_base=4096, channel_max=256),
            "D": dict(channel_base=4096, channel_max=256),
            "train": dict(_TRAIN, steps=20000, batch_size=64, ema_half_life_kimg=5.0, log_every=200,
                          sample_every=2000, checkpoint_every=2000)},
}


# ----------------------------------------------------------------------------------------------------------
# What chapter 03 measures (on `shapes`, whose factors are known)

FACTORS = ("shape", "colour", "background", "position")


@torch.no_grad()
def read_factors(images: torch.Tensor, judge) -> dict[str, torch.Tensor]:
    """Read the factors of `shapes` images [N, 3, R, R] in [-1, 1] back off the pixels.

    ``shape`` and ``colour`` (class indices [N]) are the most likely ones according to the shapes judge's
    (shape, colour) classifier; ``background`` [N] is the palette background nearest to the median colour of
    the image's border; ``position`` [N, 2] is the centroid (x, y, as fractions of the side) of the pixels
    that differ clearly from that background.
    """
    from .. import data as datasets
    from ..metrics import classify

    images = images.float().cpu()
    _, probs = classify(judge.model, judge.prepare(images))
    pairs = probs[:, : judge.pairs].reshape(len(images), len(datasets.SHAPE_NAMES), -1)  # [N, shapes, colours]
    border = torch.cat([images[:, :, 0], images[:, :, -1], images[:, :, :, 0], images[:, :, :, -1]], dim=2)
    bg = border.median(dim=2).values  # [N, 3]
    palette = torch.tensor(list(datasets.SHAPE_BACKGROUNDS.values())) * 2 - 1  # [B, 3] in [-1, 1]
    background = torch.cdist(bg, palette).argmin(dim=1)
    fg = ((images - bg[:, :, None, None]).abs().amax(dim=1) > 0.3).float()  # [N, R, R]
    r = images.shape[-1]
    coords = (torch.arange(r, dtype=torch.float32) + 0.5) / r
    mass = fg.sum(dim=(1, 2)).clamp(min=1)
    position = torch.stack([(fg.sum(1) * coords).sum(1) / mass, (fg.sum(2) * coords).sum(1) / mass], dim=1)
    return {"shape": pairs.sum(2).argmax(1), "colour": pairs.sum(1).argmax(1), "background": background,
            "position": position}


@torch.no_grad()
def mixing_shares(G, judge, crossover: int, n: int = 1000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Which factors follow the coarse latent and which the fine one when styles are mixed at `crossover`.

    For n pairs of latents (a, b): images A = G(a), B = G(b) and the mix M with rows [0, crossover) of a's ws
    and the rest of b's (constant noise throughout). For each factor, over the pairs where A and B differ in
    it (categorical factors) or always (position), the share of mixes whose factor equals A's ("coarse"),
    B's ("fine") or neither; for position, "coarse" when M's centroid is nearer A's than B's. Returns
    {factor: {"coarse": share, "fine": share, "pairs": count}}.
    """
    from ..models.stylegan import broadcast

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
    import copy

    from ..models.stylegan import broadcast
    from ..viz import lerp, slerp

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

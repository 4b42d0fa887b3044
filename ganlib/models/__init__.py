"""Model families, one file each. `build(spec)` rebuilds a (G, D) pair from the plain dict stored in
every checkpoint: ``{"family": "dcgan", "G": {constructor kwargs}, "D": {constructor kwargs}}``."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import nn

from ..errors import GanlibError

# family name -> (module, generator class, discriminator class)
FAMILIES = {
    "gan": ("mlp", "MLPGenerator", "MLPDiscriminator"),
    "dcgan": ("dcgan", "Generator", "Discriminator"),
    "pggan": ("pggan", "Generator", "Discriminator"),
    "biggan": ("biggan", "Generator", "Discriminator"),
    "stylegan": ("stylegan", "Generator", "Discriminator"),
}


def build(spec: dict):
    """(G, D) from a model spec; a GanlibError if the spec does not fit this version of ganlib."""
    family = spec.get("family")
    if family not in FAMILIES:
        raise GanlibError(f"unknown model family {family!r}: this ganlib knows {', '.join(FAMILIES)}.")
    module, g_name, d_name = FAMILIES[family]
    mod = importlib.import_module(f"{__name__}.{module}")
    try:
        return getattr(mod, g_name)(**spec["G"]), getattr(mod, d_name)(**spec["D"])
    except TypeError as e:
        raise GanlibError(f"the saved {family} model does not match this version of ganlib ({e}): "
                          f"retrain it, or use the ganlib version that wrote it.") from None


def generate(G: nn.Module, z: torch.Tensor, labels: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
    """G's output for latents z [N, z_dim] (and labels [N] when G is class-conditional)."""
    return G(z, labels, **kwargs) if getattr(G, "num_classes", 0) else G(z, **kwargs)


@torch.no_grad()
def sample(G: nn.Module, n: int, seed: int = 0, labels: torch.Tensor | None = None,
           generate_fn: Callable = generate, device: torch.device | str | None = None,
           batch: int = 256, z: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`n` samples on the CPU (and their labels), deterministic given `seed`; G is used in eval mode.

    z ~ N(0, I) (unless given as `z` [n, z_dim], e.g. truncated) and, for a conditional G without given
    labels, uniform labels, drawn in that order from one generator seeded with `seed`.
    """
    device = device or next(G.parameters()).device
    g = torch.Generator().manual_seed(seed)
    if z is None:
        z = torch.randn(n, G.z_dim, generator=g)
    assert z.shape == (n, G.z_dim), f"z must be [{n}, {G.z_dim}], got {list(z.shape)}"
    if getattr(G, "num_classes", 0) and labels is None:
        labels = torch.randint(G.num_classes, (n,), generator=g)
    was_training = G.training
    G.eval()
    out = []
    for i in range(0, n, batch):
        y = labels[i: i + batch].to(device) if labels is not None else None
        out.append(generate_fn(G, z[i: i + batch].to(device), y).float().cpu())
    G.train(was_training)
    return torch.cat(out), labels

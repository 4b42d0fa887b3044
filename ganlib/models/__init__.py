"""Model families, one file each. `build(spec)` rebuilds a (G, D) pair from the plain dict stored in
every checkpoint: ``{"family": "dcgan", "G": {constructor kwargs}, "D": {constructor kwargs}}``.

Every generator has ``G.sample(n, seed=0, truncation=None, ...)`` -> (samples on the CPU, labels or None), with
its family's own options as keyword arguments (BigGAN's labels and batch-norm statistics, StyleGAN's truncation
cutoff, PGGAN's resolution and fade-in); they share `draw`."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import nn

from ..errors import GanlibError, check_shape

# family name -> (module, generator class, discriminator class)
FAMILIES = {
    "gan": ("mlp", "MLPGenerator", "MLPDiscriminator"),
    "dcgan": ("dcgan", "Generator", "Discriminator"),
    "pggan": ("pggan", "Generator", "Discriminator"),
    "biggan": ("biggan", "Generator", "Discriminator"),
    "stylegan": ("stylegan", "Generator", "Discriminator"),
}
D_MODULES = {"stylegan": "stylegan_discriminator"}  # a family whose D has a file of its own (default: G's)
MODULES = sorted({module for module, _, _ in FAMILIES.values()} | set(D_MODULES.values()))

__all__ = ["FAMILIES", "D_MODULES", "MODULES", "build", "check_version", "generate", "refuse_truncation", "draw",
           *MODULES]


def __getattr__(name: str):
    """The family modules (`ganlib.models.dcgan`, ...), imported on first use."""
    if name in MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build(spec: dict, saved: bool = False):
    """(G, D) from a model spec; a GanlibError if the spec does not fit the family's networks. `saved`: the spec
    comes from a checkpoint (the error then points to the ganlib version that wrote it), not from a preset."""
    family = spec.get("family")
    if family not in FAMILIES:
        raise GanlibError(f"unknown model family {family!r}: this ganlib knows {', '.join(FAMILIES)}.")
    module, g_name, d_name = FAMILIES[family]
    mod = importlib.import_module(f"{__name__}.{module}")
    d_mod = importlib.import_module(f"{__name__}.{D_MODULES.get(family, module)}")
    if saved:
        check_version(spec)
    try:
        return getattr(mod, g_name)(**spec["G"]), getattr(d_mod, d_name)(**spec["D"])
    except TypeError as e:
        if saved:
            raise GanlibError(f"the saved {family} model does not match this version of ganlib ({e}): "
                              f"retrain it, or use the ganlib version that wrote it.") from None
        raise GanlibError(f"the {family} networks do not take these arguments ({e}): check the G and D entries "
                          f"of the preset or of preset_overrides against {module}.{g_name} and "
                          f"{D_MODULES.get(family, module)}.{d_name}.") from None


def check_version(spec: dict) -> None:
    """A GanlibError when a saved spec's networks are of another version than this ganlib builds: a family module's
    VERSION (1 where it has none), which the spec records as "version" (a spec without one is version 1)."""
    family = spec.get("family")
    if family not in FAMILIES:
        return
    built = getattr(importlib.import_module(f"{__name__}.{FAMILIES[family][0]}"), "VERSION", 1)
    saved = spec.get("version", 1)
    if saved != built:
        raise GanlibError(f"the saved {family} networks are version {saved}, this ganlib builds version {built} "
                          f"(see ganlib/models/{FAMILIES[family][0]}.py, VERSION): retrain, or use the ganlib "
                          f"version that wrote them.")


def generate(G: nn.Module, z: torch.Tensor, labels: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
    """G's output for latents z [N, z_dim] (and labels [N] when G is class-conditional)."""
    return G(z, labels, **kwargs) if getattr(G, "num_classes", 0) else G(z, **kwargs)


def refuse_truncation(G: nn.Module, truncation: float | None) -> None:
    """The `sample` of a family without a truncation trick: a GanlibError unless `truncation` is None."""
    if truncation is not None:
        name = f"{type(G).__module__}.{type(G).__name__}"
        raise GanlibError(f"truncation {truncation!r}: {name} has no truncation trick; sample without one (no "
                          f"--truncation), or use a model that has one (StyleGAN, BigGAN).")


@torch.no_grad()
def draw(G: nn.Module, n: int, seed: int, labels: torch.Tensor | None = None, batch: int = 256,
         forward: Callable | None = None, z: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What every generator's `sample` returns: `n` samples on the CPU and their labels (None when G is not
    class-conditional), deterministic given `seed`; G runs in eval mode and is left in the mode it was in.

    Args:
        G: a generator (`z_dim`; `num_classes` > 0 when class-conditional).
        n, seed: how many samples; `seed` draws z ~ N(0, I) [n, z_dim] (unless `z` is given), then, for a
            conditional G without `labels`, uniform labels [n], in that order.
        labels: [n] classes for a conditional G.
        batch: samples per forward pass.
        forward: ``(z, labels) -> samples``, how the family runs G (default: G(z, labels), or G(z)).
        z: the latents [n, z_dim], when the family draws them itself (BigGAN's truncated normal).
    """
    g = torch.Generator().manual_seed(seed)
    if z is None:
        z = torch.randn(n, G.z_dim, generator=g)
    check_shape(z, (n, G.z_dim), "z")
    if getattr(G, "num_classes", 0) and labels is None:
        labels = torch.randint(G.num_classes, (n,), generator=g)
    forward = forward or (lambda z, y: generate(G, z, y))
    device, was_training = next(G.parameters()).device, G.training
    G.eval()
    out = []
    for i in range(0, n, batch):
        y = labels[i: i + batch].to(device) if labels is not None else None
        out.append(forward(z[i: i + batch].to(device), y).float().cpu())
    G.train(was_training)
    return torch.cat(out), labels

"""Model families, one file each. `build(spec)` rebuilds a (G, D) pair from the plain dict stored in
every checkpoint: ``{"family": "dcgan", "G": {constructor kwargs}, "D": {constructor kwargs}}``."""

from __future__ import annotations

import importlib
import inspect
import math
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

__all__ = ["FAMILIES", "build", "generate", "sample", *sorted({module for module, _, _ in FAMILIES.values()})]


def __getattr__(name: str):
    """The family modules (`ganlib.models.dcgan`, ...), imported on first use."""
    if name in {module for module, _, _ in FAMILIES.values()}:
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
    if saved:
        check_version(spec)
    try:
        return getattr(mod, g_name)(**spec["G"]), getattr(mod, d_name)(**spec["D"])
    except TypeError as e:
        if saved:
            raise GanlibError(f"the saved {family} model does not match this version of ganlib ({e}): "
                              f"retrain it, or use the ganlib version that wrote it.") from None
        raise GanlibError(f"the {family} networks do not take these arguments ({e}): check the G and D entries "
                          f"of the preset or of preset_overrides against {module}.{g_name} and "
                          f"{module}.{d_name}.") from None


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


@torch.no_grad()
def sample(G: nn.Module, n: int, seed: int = 0, labels: torch.Tensor | None = None, truncation: float | None = None,
           generate_fn: Callable = generate, device: torch.device | str | None = None,
           batch: int = 256, **options) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`n` samples of any family's G on the CPU (and their labels), deterministic given `seed`; G runs in eval mode.

    Args:
        G: a generator.
        n: how many samples.
        seed: seeds z ~ N(0, I) and, for a conditional G without `labels`, uniform labels (drawn in that order).
        labels: [n] classes for a class-conditional G (None: uniform).
        truncation: the family's truncation trick, None for none: StyleGAN's psi (w pulled towards the average
            w; 1: off), BigGAN's threshold of the truncated normal. A family with a trick (or its own way of
            sampling) implements it in its generator's method ``sampling(n, seed, truncation) -> (z or None,
            generate_fn or None)``, in its model module; a GanlibError for a G without one.
        generate_fn: how to run G on a batch, ``(G, z, labels) -> samples`` (a trainer's `generate`: PGGAN's
            current resolution); the family's own, when `sampling` gives one, comes first.
        device, batch: where G runs, and how many samples per forward pass.
        **options: the family's own sampling options, passed on to its `sampling` (BigGAN: statistics=
            "standing", "running" or "batch", which batch-norm statistics normalise the samples).
    """
    sampling = getattr(G, "sampling", None)  # the model family's sampling (StyleGAN, BigGAN)
    name = f"{type(G).__module__}.{type(G).__name__}"
    if truncation is not None and not (isinstance(truncation, (int, float)) and math.isfinite(truncation)):
        raise GanlibError(f"truncation {truncation!r}: use a finite number (see the model's truncation trick), or "
                          f"none for plain sampling.")
    if sampling is None and truncation is not None:
        raise GanlibError(f"truncation {truncation!r}: {name} has no truncation trick; sample without one (no "
                          f"--truncation), or use a model that has one (StyleGAN, BigGAN).")
    takes = set(inspect.signature(sampling).parameters) - {"n", "seed", "truncation"} if sampling else set()
    if set(options) - takes:
        raise GanlibError(f"sampling options {sorted(set(options) - takes)}: {name} takes "
                          f"{sorted(takes) if takes else 'none'}; leave the others out.")
    was_training = G.training
    z, family_fn = sampling(n, seed, truncation, **options) if sampling is not None else (None, None)
    generate_fn = family_fn or generate_fn
    device = device or next(G.parameters()).device
    g = torch.Generator().manual_seed(seed)
    if z is None:
        z = torch.randn(n, G.z_dim, generator=g)
    assert z.shape == (n, G.z_dim), f"z must be [{n}, {G.z_dim}], got {list(z.shape)}"
    if getattr(G, "num_classes", 0) and labels is None:
        labels = torch.randint(G.num_classes, (n,), generator=g)
    G.eval()
    out = []
    for i in range(0, n, batch):
        y = labels[i: i + batch].to(device) if labels is not None else None
        out.append(generate_fn(G, z[i: i + batch].to(device), y).float().cpu())
    G.train(was_training)
    return torch.cat(out), labels

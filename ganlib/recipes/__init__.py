"""Recipes: for each model the command line can train, its hyper-parameters per profile and how to build it.

A recipe is a module with
    PRESETS:  {"smoke": {...}, "cpu": {...}, "gpu": {...}}, each with keys
              data, resolution (images only), G and D (constructor kwargs), train (TrainConfig kwargs);
    FAMILY:   the model family in `ganlib.models` (what `models.build` rebuilds);
    TRAINER:  the `Trainer` class to use (a chapter's subclass, or the plain one); a preset's optional
              "trainer" dict holds extra keyword arguments for it (PGGAN: the growth schedule);
    NET_OPTIONS: optionally, {name: "G" or "D"}: network arguments that `make_trainer`'s keyword arguments
              (and so the command line's `--set NAME=VALUE`) reach next to the training options (gan: pack);
    DATA_KIND: "points" for a model of 2-D points (default "images");
and optionally `model_spec(preset, data)` when the networks' arguments depend on the data in a special way.

`make_trainer("dcgan", profile="cpu")` is what both the command line and the notebooks call.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path

from .. import data as datasets
from ..env import PROFILES, current_profile
from ..errors import GanlibError
from ..train import TrainConfig, Trainer

RECIPES = (
    "gan",
    "dcgan",
    "pggan",
    "biggan",
    "stylegan",
)


def get(name: str):
    """The recipe module for a model name."""
    if name not in RECIPES:
        raise GanlibError(f"unknown model {name!r}: use one of {', '.join(RECIPES)}.")
    return importlib.import_module(f"{__name__}.{name}")


def preset(name: str, profile: str | None = None) -> dict:
    """A deep copy of one profile's preset of a recipe (edit it freely)."""
    profile = profile or current_profile()
    if profile not in PROFILES:
        raise GanlibError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}.")
    return copy.deepcopy(get(name).PRESETS[profile])


def default_spec(family: str, preset: dict, data) -> dict:
    """G and D kwargs from the preset plus what the data decides (resolution, channels, classes)."""
    G, D = dict(preset["G"]), dict(preset["D"])
    if data.kind == "images":
        for kw in (G, D):
            kw.update(resolution=data.resolution, img_channels=data.channels)
        if G.pop("conditional", False):
            if not data.num_classes:
                raise GanlibError(f"{data.name} has no labels, so a class-conditional model cannot be trained "
                                  f"on it: drop 'conditional', or use a labelled dataset.")
            G["num_classes"] = D["num_classes"] = data.num_classes
    return {"family": family, "G": G, "D": D}


def make_trainer(name: str, profile: str | None = None, data: str | None = None, resolution: int | None = None,
                 run_dir: str | Path | None = None, device=None, preset_overrides: dict | None = None,
                 **train_overrides) -> Trainer:
    """Build the data, the networks and the trainer of recipe `name` for a profile.

    Args:
        name: a recipe name (see RECIPES).
        profile: smoke, cpu or gpu (default: GANLIB_PROFILE or the machine's default).
        data, resolution: override the preset's dataset and resolution.
        run_dir: where checkpoints and sample grids go.
        device: torch device (default: CUDA when available).
        preset_overrides: replaces top-level preset entries (e.g. {"G": {...}}).
        **train_overrides: TrainConfig fields (steps=..., seed=..., lr_g=...), and the recipe's NET_OPTIONS
            (gan: pack=2).
    """
    from ..models import build

    recipe = get(name)
    p = preset(name, profile)
    p.update(preset_overrides or {})
    for option, net in getattr(recipe, "NET_OPTIONS", {}).items():
        if option in train_overrides:
            p[net] = dict(p[net], **{option: train_overrides.pop(option)})
    p["data"] = data or p["data"]
    p["resolution"] = resolution or p.get("resolution")
    ds = datasets.load(p["data"], resolution=p["resolution"], split="train", seed=p["train"].get("seed", 0))
    kind = getattr(recipe, "DATA_KIND", "images")
    if ds.kind != kind:
        if kind == "points":
            raise GanlibError(f"the {name} model is for 2-D points (ring8, grid25), and {ds.name} holds images: "
                              f"train an image model on it (dcgan, pggan, stylegan, biggan), or pass --data ring8.")
        raise GanlibError(f"{name} needs images, and {ds.name} holds 2-D points: use gan for 2-D data, or pass "
                          f"an image dataset (--data digits, shapes, or folder:PATH).")
    spec_fn = getattr(recipe, "model_spec", None) or (lambda pr, d: default_spec(recipe.FAMILY, pr, d))
    spec = spec_fn(p, ds)
    G, D = build(spec)
    cfg = TrainConfig.from_dict({**p["train"], **train_overrides})
    trainer_cls = getattr(recipe, "TRAINER", Trainer)
    trainer = trainer_cls(G, D, ds, cfg, run_dir=run_dir, device=device, spec=spec, **p.get("trainer", {}))
    trainer.preset = p
    return trainer


def load_generator(run_dir: str | Path, device=None):
    """(G, spec, checkpoint state) of a run: G_ema when the run kept one, in eval mode."""
    import torch

    from ..models import build
    from ..train import load_checkpoint_file

    state = load_checkpoint_file(run_dir)
    spec = state.get("spec")
    if not spec:
        raise GanlibError(f"the checkpoint in {str(run_dir)!r} has no model description (it was trained from "
                          f"hand-built networks); sample it from Python with Trainer.sample instead.")
    G, _ = build(spec)
    try:
        G.load_state_dict(state["G_ema"] if state.get("G_ema") is not None else state["G"])
    except RuntimeError as e:
        raise GanlibError(f"the weights in {str(run_dir)!r} do not fit the model they claim to be "
                          f"({str(e).splitlines()[0][:120]}): the checkpoint is damaged; train again.") from None
    device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return G.to(device).eval(), spec, state


def sample_from_run(run_dir: str | Path, n: int, seed: int = 0, label: int | None = None,
                    truncation: float | None = None, device=None):
    """(samples on the CPU, labels or None, "images" or "points") from a trained run, with its recipe's
    `sample` function when it has one (BigGAN and StyleGAN add truncation)."""
    import torch

    from .. import models

    G, spec, _ = load_generator(run_dir, device)
    if n <= 0:
        raise GanlibError(f"--num {n}: ask for at least one sample.")
    labels = None
    if label is not None:
        if not getattr(G, "num_classes", 0):
            raise GanlibError("--class needs a class-conditional model; this one is not.")
        if not 0 <= label < G.num_classes:
            raise GanlibError(f"--class {label}: this model has classes 0 to {G.num_classes - 1}.")
        labels = torch.full((n,), label, dtype=torch.long)
    recipe = get(spec["family"])
    if hasattr(recipe, "sample"):
        x, labels = recipe.sample(G, n, seed=seed, labels=labels, truncation=truncation)
    else:
        if truncation is not None:
            raise GanlibError(f"--truncation is not supported by {spec['family']}: use it with a model that "
                              f"has a truncation trick (BigGAN, StyleGAN).")
        x, labels = models.sample(G, n, seed, labels)
    return x, labels, ("points" if x.ndim == 2 else "images")

"""Recipes: for each model the command line can train, its hyper-parameters per profile and how to build it.

A recipe is a module of presets; it holds no training code. It has
    PRESETS:  {"smoke": {...}, "cpu": {...}, "gpu": {...}}, each with keys
              data, resolution (images only), G and D (constructor kwargs), train (TrainConfig kwargs), and
              optionally trainer (keyword arguments of TRAINER: PGGAN's growth schedule, StyleGAN's
              regularisers);
    FAMILY:   the model family in `ganlib.models` (what `models.build` rebuilds);
    TRAINER:  optionally, the chapter's `Trainer` subclass (`progressive.ProgressiveTrainer`,
              `stylegan_training.StyleGANTrainer`; default the plain `Trainer`). Its `OPTIONS` fields are run
              options like TrainConfig's: `make_trainer`'s keyword arguments (and so `--set NAME=VALUE`) reach
              them, checked the same way, and checkpoints keep them;
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

from ganlib.checkpoints import load_generator
from ganlib.env import PROFILES, current_profile
from ganlib.errors import GanlibError
from ganlib.options import TrainConfig, check_names
from ganlib.train import Trainer

from .. import datasets

__all__ = [
    "RECIPES", "get", "trainer_class", "option_names", "preset", "default_spec", "make_trainer", "own_options",
    "sample_from_run"
]

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


def trainer_class(name: str) -> type[Trainer]:
    """The `Trainer` (sub)class that trains recipe `name`."""
    return getattr(get(name), "TRAINER", Trainer)


def option_names(name: str) -> set[str]:
    """The run options of recipe `name`: TrainConfig's fields and its trainer's `OPTIONS` fields."""
    own = trainer_class(name).OPTIONS
    return set(TrainConfig.names()) | set(own.names() if own else ())


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
        **train_overrides: run options (`option_names`: TrainConfig fields such as steps=..., seed=..., lr_g=...,
            and the trainer's OPTIONS such as StyleGAN's style_mixing=...), and the recipe's NET_OPTIONS
            (gan: pack=2).
    """
    from ganlib.models import build

    recipe = get(name)
    p = preset(name, profile)
    p.update(preset_overrides or {})
    for option, net in getattr(recipe, "NET_OPTIONS", {}).items():
        if option in train_overrides:
            p[net] = dict(p[net], **{option: train_overrides.pop(option)})
    trainer_cls = trainer_class(name)
    _check_recipe_options(name, train_overrides)
    check_names(train_overrides, option_names(name))  # before anything is loaded or built
    own = trainer_cls.OPTIONS.names() if trainer_cls.OPTIONS else []
    trainer_options = {option: train_overrides.pop(option) for option in own if option in train_overrides}
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
    trainer_kwargs = {**p.get("trainer", {}), **trainer_options}
    _check_batches(cfg, ds, D, trainer_kwargs.get("growth"))
    trainer = trainer_cls(G, D, ds, cfg, run_dir=run_dir, device=device, spec=spec, **trainer_kwargs)
    trainer.preset = p
    return trainer


def own_options(name: str) -> set[str]:
    """The options only recipe `name` has: its NET_OPTIONS and its trainer's OPTIONS (not TrainConfig's)."""
    own = trainer_class(name).OPTIONS
    return set(getattr(get(name), "NET_OPTIONS", {})) | set(own.names() if own else ())


def _check_recipe_options(name: str, given: dict) -> None:
    """A GanlibError for an option given to recipe `name` that belongs to another recipe (pack to dcgan)."""
    misplaced = {option: other for other in RECIPES if other != name for option in own_options(other)
                 if option in given and option not in option_names(name)}
    if misplaced:
        option, other = sorted(misplaced.items())[0]
        owners = sorted(r for r in RECIPES if option in own_options(r))
        raise GanlibError(f"{option} is an option of {' and '.join(owners)}, not of {name}: train "
                          f"{' or '.join(owners)} to use it, or leave --set {option}=... out.")


def _check_batches(cfg: TrainConfig, data, D, growth: dict | None = None) -> None:
    """Every minibatch the run will use must fit in the dataset and be a multiple of the groups D forms
    (minibatch standard deviation's, packing's), checked before the first step; with progressive `growth`
    (`GrowthSchedule` arguments), the minibatch of every resolution it grows through."""
    from ganlib import distributed
    from ganlib.progressive import GrowthSchedule

    batches = {None: cfg.batch_size}  # {resolution or None: minibatch}
    if growth is not None:
        schedule = GrowthSchedule(**{"final_resolution": data.resolution, **growth})
        resolutions = [schedule.start_resolution << i for i in range(schedule.levels + 1)]
        batches = {r: schedule.batch(r, cfg.batch_size) for r in resolutions}
    n, processes = len(data), distributed.world_size()
    for resolution, batch in batches.items():
        where = f" (the minibatch at {resolution}x{resolution})" if resolution and batch != cfg.batch_size else ""
        if batch * processes > n:
            many = f"{batch} x {processes} processes" if processes > 1 else f"{batch}"
            raise GanlibError(f"batch size {many}{where} is larger than the {n} samples of {data.name}: "
                              f"use --batch-size {n // processes} or less.")
        group = getattr(D, "mbstd_group", None)
        if group and batch % min(group, batch):
            raise GanlibError(f"batch size {batch}{where}: the discriminator's minibatch standard deviation "
                              f"compares samples in groups of {group}, so the batch must be a multiple of "
                              f"{group}: use --batch-size {max(group, batch - batch % group)}.")
        pack = getattr(D, "pack", 1)
        if batch % pack:
            raise GanlibError(f"batch size {batch}: the discriminator judges packs of {pack} samples (pack={pack}), "
                              f"so the batch must be a multiple of {pack}: use --batch-size "
                              f"{max(pack, batch - batch % pack)}.")


def sample_from_run(run_dir: str | Path, n: int, seed: int = 0, label: int | None = None,
                    truncation: float | None = None, device=None):
    """(samples on the CPU, labels or None, "images" or "points") from a trained run, all of class `label`
    when given, with the model's truncation trick at `truncation` (its G's `sample`)."""
    import torch

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
    x, labels = G.sample(n, seed, truncation, **({"labels": labels} if labels is not None else {}))
    bad = int((~torch.isfinite(x.flatten(1)).all(dim=1)).sum())
    if bad:
        raise GanlibError(f"{bad} of the {n} samples hold NaN or infinite values: the generator in "
                          f"{str(run_dir)!r} diverged; sample an earlier checkpoint, or train again with a lower "
                          f"learning rate.")
    return x, labels, ("points" if x.ndim == 2 else "images")

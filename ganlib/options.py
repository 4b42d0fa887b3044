"""A run's options: `TrainConfig` (the shared loop's) and the checks every option gets.

`Options` is the base of every dataclass of options: `TrainConfig` here, a chapter trainer's own settings
beside it (StyleGAN's regularisers: `stylegan_training.StyleGANOptions`). On creation each value is checked
against the kind of its default and its range (`RANGES`) or choices (`CHOICES`), and `from_dict` names unknown
options with a "did you mean". What the command line's `--set NAME=VALUE` and `recipes.make_trainer(...,
NAME=VALUE)` reach is the union of `TrainConfig` and the recipe's trainer's `OPTIONS`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import ClassVar

from . import losses
from .errors import GanlibError

__all__ = [
    "RESUME_FIXED", "AT_LEAST_1", "POSITIVE", "NON_NEGATIVE", "FRACTION", "DECAY", "check_names",
    "Options", "checked", "OPTION_RANGES", "TrainConfig", "option_changes"
]

# The options a run cannot change when it resumes, and why (the others apply from the resumed step on)
RESUME_FIXED = {"seed": "the data order and the latents follow it",
                "loss": "D's outputs mean what its loss made them mean"}


# The valid values of a numeric option: (in words, test)
AT_LEAST_1, POSITIVE, NON_NEGATIVE = (">= 1", lambda v: v >= 1), ("> 0", lambda v: v > 0), (">= 0", lambda v: v >= 0)
FRACTION, DECAY = ("in [0, 1]", lambda v: 0 <= v <= 1), ("in [0, 1)", lambda v: 0 <= v < 1)


def check_names(given: Iterable[str], known: Iterable[str]) -> None:
    """A GanlibError naming every option in `given` that is not in `known`, each with its nearest known name."""
    known = sorted(set(known))
    unknown = sorted(set(given) - set(known))
    if unknown:
        named = [name + "".join(f" (did you mean {close}?)" for close in difflib.get_close_matches(name, known, 1))
                 for name in unknown]
        raise GanlibError(f"unknown training option(s) {', '.join(named)}: known are {', '.join(known)}.")


class Options:
    """Base of a dataclass of options, each value checked on creation (`checked`): a field's kind is its
    default's (True/False, a whole number, a number, a pair of numbers; a default of None: None or a number), its
    valid values those of `RANGES[name]` (numbers) or `CHOICES[name]` (names)."""

    RANGES: ClassVar[dict[str, tuple[str, Callable]]] = {}
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in self.CHOICES:
                if value not in self.CHOICES[f.name]:
                    raise GanlibError(f"unknown {f.name} {value!r}: use one of {', '.join(self.CHOICES[f.name])}.")
            elif value is not None or f.default is not None:
                setattr(self, f.name, checked(f.name, value, f.default, self.RANGES.get(f.name)))

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, d: dict):
        check_names(d, cls.names())
        return cls(**d)


def checked(name: str, value, default, valid: tuple[str, Callable] | None):
    """`value` as option `name` holds it (ints accepted as numbers, a list as a pair), of the kind of its
    `default`, within `valid` (words, test); else a GanlibError that says which values are valid."""
    words, test = valid or ("", lambda v: True)

    def number(v, whole: bool):
        if isinstance(v, bool) or not isinstance(v, int if whole else (int, float)):
            return None
        v = v if whole else float(v)
        return v if math.isfinite(v) and test(v) else None

    if isinstance(default, bool):
        result, form = (value if isinstance(value, bool) else None), "True or False"
    elif isinstance(default, int):
        result, form = number(value, whole=True), f"a whole number {words}"
    elif isinstance(default, tuple):  # Adam's betas
        pair = tuple(number(v, whole=False) for v in value) if isinstance(value, (tuple, list)) else ()
        result, form = (pair if len(pair) == 2 and None not in pair else None), f"two numbers {words}"
    else:  # a number, or None
        result, form = number(value, whole=False), f"a number {words}"
    if result is None:
        example = f", e.g. {name}={default!r}" if default is not None else ""
        raise GanlibError(f"{name} must be {'None or ' if default is None else ''}{form}{example}; got {value!r}.")
    return result


# The range of every numeric TrainConfig option (betas: of each of the two)
OPTION_RANGES = {
    "steps": AT_LEAST_1, "batch_size": AT_LEAST_1, "accumulate": AT_LEAST_1, "d_steps": AT_LEAST_1,
    "lr_g": POSITIVE, "lr_d": POSITIVE, "betas": DECAY, "eps": POSITIVE, "lr_decay_start": FRACTION,
    "gp_weight": NON_NEGATIVE, "drift": NON_NEGATIVE, "r1_gamma": NON_NEGATIVE, "r1_every": AT_LEAST_1,
    "ortho_beta": NON_NEGATIVE, "ema_beta": DECAY, "ema_half_life_kimg": POSITIVE, "ema_start": NON_NEGATIVE,
    "log_every": AT_LEAST_1, "sample_every": NON_NEGATIVE, "checkpoint_every": NON_NEGATIVE,
    "threads": NON_NEGATIVE, "seed": NON_NEGATIVE,
}


@dataclass
class TrainConfig(Options):
    """Every knob of the shared loop, with the value used when you don't say otherwise."""

    RANGES = OPTION_RANGES
    CHOICES = {"loss": tuple(losses.GAN_LOSSES)}

    steps: int = 1000  # generator updates in total (training stops when `step` reaches this)
    batch_size: int = 64  # real images per discriminator forward pass (a micro-batch when accumulating)
    accumulate: int = 1  # micro-batches per update: gradients are averaged, effective batch = batch_size * this
    loss: str = "nonsaturating"  # a key of losses.GAN_LOSSES
    d_steps: int = 1  # discriminator updates per generator update
    lr_g: float = 2e-4  # Adam learning rate of G
    lr_d: float = 2e-4  # Adam learning rate of D
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas (DCGAN; PGGAN/StyleGAN use (0, 0.99))
    eps: float = 1e-8  # Adam epsilon
    lr_decay_start: float | None = None  # fraction of `steps` after which both rates fall linearly to 0
    gp_weight: float = 0.0  # WGAN-GP lambda (10 in WGAN-GP and PGGAN); 0 = off
    drift: float = 0.0  # PGGAN's drift epsilon (0.001); 0 = off
    r1_gamma: float = 0.0  # R1 gamma (StyleGAN: 10); 0 = off
    r1_every: int = 1  # lazy R1: apply every k D steps, scaled by k (StyleGAN2: 16)
    ortho_beta: float = 0.0  # orthogonal regularisation of G, the paper's beta (1e-4; --G_ortho b is b / 2); 0 = off
    ema_beta: float | None = None  # G_ema decay per G update (PGGAN 0.999, BigGAN 0.9999) ...
    ema_half_life_kimg: float | None = None  # ... or a half-life in thousands of images (StyleGAN: 10)
    ema_start: int = 0  # before this step G_ema just copies G (BigGAN)
    log_every: int = 50  # steps between loss logs (and NaN checks)
    sample_every: int = 0  # steps between sample grids in the run folder (0: only at the end)
    checkpoint_every: int = 0  # steps between checkpoints (0: only at the end)
    amp: bool = False  # mixed precision (CUDA only: bf16 where supported, else fp16 with loss scaling)
    sync_batchnorm: bool = False  # several GPUs: batch norm statistics over the global batch (SyncBatchNorm);
    # off, each process normalises its own batch (as BigGAN-PyTorch does)
    threads: int = 0  # CPU threads while training (0: as `ganlib.setup` set them); the 2-D toy models' preset: 1
    seed: int = 0  # seeds data order, latents and labels

    def __post_init__(self):
        super().__post_init__()
        if self.ema_beta is not None and self.ema_half_life_kimg is not None:
            raise GanlibError("give either ema_beta or ema_half_life_kimg, not both.")


def option_changes(saved: dict, current: dict, path) -> list[str]:
    """The options of `current` (name -> value) that differ from a checkpoint's `saved` ones, as
    "lr_g 0.0002 -> 0.0001"; a GanlibError if one of `RESUME_FIXED` differs. Options the checkpoint does not
    record keep their current value silently."""
    show = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    changes = []
    for name, new in current.items():
        old = saved.get(name, new)
        old = tuple(old) if isinstance(old, list) else old
        if old == new:
            continue
        if name in RESUME_FIXED:
            raise GanlibError(f"{str(path)!r} was trained with {name}={old!r}, this run asks for {name}={new!r}: "
                              f"{RESUME_FIXED[name]}, so it cannot change when resuming; resume with "
                              f"{name}={old!r}, or start a new run in another folder.")
        changes.append(f"{name} {show(old)} -> {show(new)}")
    return changes

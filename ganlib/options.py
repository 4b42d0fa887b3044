"""A run's options: `TrainConfig` (the shared loop's) and the checks every option gets.

`Options` is the base of every dataclass of options: `TrainConfig` here, a chapter trainer's own settings
beside it (StyleGAN's regularisers: `stylegan_training.StyleGANOptions`). On creation each value is checked
against its field's type and its range (`RANGES`) or choices (`CHOICES`), and `from_dict` names unknown
options with a "did you mean". What the command line's `--set NAME=VALUE` and `recipes.make_trainer(...,
NAME=VALUE)` reach is the union of `TrainConfig` and the recipe's trainer's `OPTIONS`.
"""

from __future__ import annotations

import difflib
import math
import typing
from collections.abc import Iterable
from dataclasses import dataclass, fields

from . import losses
from .errors import GanlibError

__all__ = [
    "RESUME_FIXED", "Interval", "AT_LEAST_1", "POSITIVE", "NON_NEGATIVE", "FRACTION", "DECAY", "check_names",
    "Options", "checked_option", "OPTION_RANGES", "TrainConfig", "option_changes"
]

# The options a run cannot change when it resumes, and why (the others apply from the resumed step on)
RESUME_FIXED = {"seed": "the data order and the latents follow it",
                "loss": "D's outputs mean what its loss made them mean"}


@dataclass(frozen=True)
class Interval:
    """The valid values of a numeric option: from `low` to `high` (None: no upper bound), ends included unless
    open."""

    low: float
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, v: float) -> bool:
        return ((v > self.low if self.open_low else v >= self.low)
                and (self.high is None or (v < self.high if self.open_high else v <= self.high)))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"


AT_LEAST_1, POSITIVE, NON_NEGATIVE = Interval(1), Interval(0, open_low=True), Interval(0)
FRACTION, DECAY = Interval(0, 1), Interval(0, 1, open_high=True)  # [0, 1] and [0, 1)


def check_names(given: Iterable[str], known: Iterable[str]) -> None:
    """A GanlibError naming every option in `given` that is not in `known`, each with its nearest known name."""
    known = sorted(set(known))
    unknown = sorted(set(given) - set(known))
    if unknown:
        named = [name + "".join(f" (did you mean {close}?)" for close in difflib.get_close_matches(name, known, 1))
                 for name in unknown]
        raise GanlibError(f"unknown training option(s) {', '.join(named)}: known are {', '.join(known)}.")


class Options:
    """Base of a dataclass of options: each value is checked on creation (see `checked_option`).

    Subclasses (decorated with @dataclass) list the range of every numeric field in `RANGES` and the valid
    values of a field of names in `CHOICES`.
    """

    RANGES: typing.ClassVar[dict[str, Interval]] = {}
    CHOICES: typing.ClassVar[dict[str, Iterable[str]]] = {}

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            setattr(self, f.name, checked_option(f.name, getattr(self, f.name), hints[f.name], f.default,
                                                 self.RANGES.get(f.name), self.CHOICES.get(f.name)))

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, d: dict):
        check_names(d, cls.names())
        return cls(**d)


def checked_option(name: str, value, hint, default, valid: Interval | None = None, choices=None):
    """`value` as option `name` of type `hint` holds it (ints accepted as floats, a list as a tuple of two
    numbers), or a GanlibError that says which values are valid: those in the interval `valid`, or one of
    `choices`."""
    if choices is not None:
        if value not in choices:
            raise GanlibError(f"unknown {name} {value!r}: use one of {', '.join(choices)}.")
        return value
    optional = type(None) in typing.get_args(hint)
    if optional and value is None:
        return None
    kind = tuple if typing.get_origin(hint) is tuple else next(t for t in typing.get_args(hint) or (hint,)
                                                                 if t is not type(None))

    def number(v, whole: bool):
        if isinstance(v, bool) or not isinstance(v, int if whole else (int, float)):
            return None
        v = v if whole else float(v)
        return v if math.isfinite(v) and (valid is None or v in valid) else None

    if kind is bool:
        checked, form = (value if isinstance(value, bool) else None), "True or False"
    elif kind is int:
        checked, form = number(value, whole=True), f"a whole number {valid}"
    elif kind is float:
        checked, form = number(value, whole=False), f"a number {valid}"
    else:  # tuple[float, float]: Adam's betas
        pair = tuple(number(v, whole=False) for v in value) if isinstance(value, (tuple, list)) else ()
        checked, form = (pair if len(pair) == 2 and None not in pair else None), f"two numbers {valid}"
    if checked is None:
        example = f", e.g. {name}={default!r}" if default is not None else ""
        raise GanlibError(f"{name} must be {'None or ' if optional else ''}{form}{example}; got {value!r}.")
    return checked


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
    ortho_beta: float = 0.0  # BigGAN's orthogonal regularisation of G's weights (1e-4); 0 = off
    ema_beta: float | None = None  # G_ema decay per G update (PGGAN 0.999, BigGAN 0.9999) ...
    ema_half_life_kimg: float | None = None  # ... or a half-life in thousands of images (StyleGAN: 10)
    ema_start: int = 0  # before this step G_ema just copies G (BigGAN)
    log_every: int = 50  # steps between loss logs (and NaN checks)
    sample_every: int = 0  # steps between sample grids in the run folder (0: only at the end)
    checkpoint_every: int = 0  # steps between checkpoints (0: only at the end)
    amp: bool = False  # mixed precision (CUDA only: bf16 where supported, else fp16 with loss scaling)
    channels_last: bool = False  # channels_last memory format (CUDA only)
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

"""Progressive growing (Karras et al. 2018): the schedule of resolutions and fade-ins, and the trainer that
follows it.

`GrowthSchedule` is the authors' `TrainingSchedule`, counted in images shown to D: starting at
`start_resolution`, each resolution is trained *stable* for `stable_kimg` thousand images, then the next one
is *faded in* over `fade_kimg` thousand images (alpha rising linearly from 0 to 1), until `final_resolution`
is reached, which then trains until the end. The paper's setting is 800k + 800k images per
phase; the authors' released code defaults to 600 + 600 kimg. As in their `minibatch_dict`, the minibatch can
depend on the resolution (larger where the networks are small and cheap).

`ProgressiveTrainer` is the shared `Trainer` with its named pieces filled in: before each step it reads the
resolution and alpha from the schedule (and, when the stage changes, resets both Adam optimisers, as the
authors' `reset_opt_for_new_lod` does); G and D run at that resolution and alpha, with the schedule's minibatch
for it; real images are box-downsampled to it and faded exactly like G's output. Checkpoints store the stage,
so a run resumes exactly, also across a resolution change.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .errors import GanlibError, check_resolution
from .models.pggan import fade_reals
from .train import Trainer

__all__ = ["GrowthSchedule", "box_downsample", "ProgressiveTrainer"]


@dataclass(frozen=True)
class GrowthSchedule:
    """Which resolution and fade-in weight alpha to train at after a number of images."""

    final_resolution: int  # the resolution the networks grow to
    start_resolution: int = 4  # where growing starts (= final_resolution: no growing, the fixed baseline)
    stable_kimg: float = 600.0  # thousands of images per resolution before the next one fades in (paper: 600)
    fade_kimg: float = 600.0  # thousands of images over which a new resolution fades in (paper: 600)
    minibatch: dict[int, int] | None = None  # {resolution: minibatch} (the authors' minibatch_dict, e.g. {4: 128,
    # ..., 32: 64, 64: 32}); a resolution not listed trains with the trainer's batch_size (their minibatch_base)

    def __post_init__(self):
        check_resolution(self.final_resolution, 4, 1024, "final_resolution")
        check_resolution(self.start_resolution, 4, self.final_resolution, "start_resolution")
        if self.stable_kimg < 0 or self.fade_kimg <= 0:
            raise GanlibError(f"stable_kimg must be >= 0 and fade_kimg > 0, got {self.stable_kimg} and "
                              f"{self.fade_kimg}.")
        for resolution, batch in (self.minibatch or {}).items():
            if isinstance(resolution, bool) or not isinstance(resolution, int):
                raise GanlibError(f"the minibatch's keys are resolutions (whole numbers), got {resolution!r}: e.g. "
                                  f"minibatch={{4: 64, 8: 32}}.")
            check_resolution(resolution, 4, 1024, "a minibatch resolution")
            if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
                raise GanlibError(f"the minibatch at {resolution}x{resolution} must be a whole number >= 1, got "
                                  f"{batch!r}: e.g. minibatch={{4: 64, 8: 32}}.")

    @property
    def levels(self) -> int:
        """How many doublings lie between the start and the final resolution."""
        return int(math.log2(self.final_resolution // self.start_resolution))

    def lod(self, images: int) -> float:
        """The authors' level of detail: `levels` at the start, 0 once the final resolution is faded in,
        a fraction while fading (with final resolution 32, lod 2.25 means 8x8 is fading in at alpha 0.75)."""
        kimg = images / 1000
        phase = self.stable_kimg + self.fade_kimg
        index = math.floor(kimg / phase)
        into = kimg - index * phase
        return max(self.levels - index - max(into - self.stable_kimg, 0.0) / self.fade_kimg, 0.0)

    def at(self, images: int) -> tuple[int, float]:
        """(resolution, alpha) after `images` images: the networks run at final / 2^floor(lod), and the
        newest block has weight alpha = 1 - (lod - floor(lod))."""
        lod = self.lod(images)
        return self.final_resolution >> math.floor(lod), 1.0 - (lod - math.floor(lod))

    def stage(self, images: int) -> tuple[int, int]:
        """(floor(lod), ceil(lod)): it changes when a fade starts and when it ends, the moments the authors
        reset the optimisers."""
        lod = self.lod(images)
        return math.floor(lod), math.ceil(lod)

    def images_until_final(self) -> int:
        """Images shown before the final resolution is fully faded in."""
        return round(self.levels * (self.stable_kimg + self.fade_kimg) * 1000)

    def batch(self, resolution: int, default: int) -> int:
        """The minibatch while the networks run at `resolution`: `minibatch`'s entry for it, else `default` (the
        trainer's batch_size)."""
        return (self.minibatch or {}).get(resolution, default)

    def images_before(self, step: int, default: int, per_batch: int = 1) -> int:
        """Images shown before (0-based) step `step`, with `default` as in `batch` and `per_batch` images per
        minibatch entry (accumulation times processes times D steps)."""
        images = 0
        for _ in range(step):
            images += per_batch * self.batch(self.at(images)[0], default)
        return images

    def steps_until(self, images: int, default: int, per_batch: int = 1) -> int:
        """The fewest steps after which at least `images` images have been shown (arguments as `images_before`)."""
        steps, seen = 0, 0
        while seen < images:
            seen += per_batch * self.batch(self.at(seen)[0], default)
            steps += 1
        return steps


def box_downsample(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Images [N, C, R, R] -> [N, C, resolution, resolution] by averaging R/resolution-square boxes."""
    factor = x.shape[-1] // resolution
    return x if factor == 1 else F.avg_pool2d(x, factor)


class ProgressiveTrainer(Trainer):
    """The shared `Trainer`, growing G and D (`ganlib.models.pggan`) along a `GrowthSchedule`.

    Args: those of `Trainer`, plus `growth`: a dict of `GrowthSchedule` arguments (its final_resolution
    defaults to the data's resolution; its minibatch replaces cfg.batch_size at the resolutions it names). Warns
    when cfg.steps end before the final resolution is faded in.
    """

    def __init__(self, G, D, data, cfg, run_dir=None, device=None, spec=None, growth: dict | None = None):
        super().__init__(G, D, data, cfg, run_dir=run_dir, device=device, spec=spec)
        growth = {"final_resolution": data.resolution, **(growth or {})}
        self.schedule = GrowthSchedule(**growth)
        if self.schedule.final_resolution != G.max_resolution or data.resolution != G.max_resolution:
            raise GanlibError(f"the networks grow to {G.max_resolution}x{G.max_resolution}, the schedule to "
                              f"{self.schedule.final_resolution} and the data is {data.resolution}x"
                              f"{data.resolution}: make all three the same.")
        self.resolution, self.alpha = self.schedule.at(0)
        self.stage = self.schedule.stage(0)
        self.optimizer_resets = 0
        final, per_batch = self.schedule.final_resolution, cfg.accumulate * self.world_size * cfg.d_steps
        last, alpha = self.schedule.at(self.schedule.images_before(cfg.steps - 1, cfg.batch_size, per_batch))
        if (last, alpha) != (final, 1.0):  # the last step trains before the final resolution is in
            needed = self.schedule.steps_until(self.schedule.images_until_final(), cfg.batch_size, per_batch) + 1
            batch = f"{cfg.batch_size}" + (f" (by resolution {self.schedule.minibatch})" if self.schedule.minibatch
                                          else "")
            warnings.warn(f"{cfg.steps} steps of batch {batch} end at {last}x{last} (alpha {alpha:.2f}), before "
                          f"{final}x{final} is faded in: that takes {needed} steps; raise steps, or shorten "
                          f"stable_kimg / fade_kimg.",
                          stacklevel=2)

    def begin_step(self) -> None:
        super().begin_step()
        self.resolution, self.alpha = self.schedule.at(self.images_seen)
        stage = self.schedule.stage(self.images_seen)
        if stage != self.stage:  # a fade-in starts or ends: fresh Adam moments, as the authors do
            self.opt_g = self.make_optimizer(self.G, self.cfg.lr_g)
            self.opt_d = self.make_optimizer(self.D, self.cfg.lr_d)
            self.stage = stage
            self.optimizer_resets += 1

    def micro_batch(self) -> int:
        return self.schedule.batch(self.resolution, self.cfg.batch_size)

    def batch_description(self) -> str:
        s = self.schedule
        sizes = [s.batch(s.start_resolution << i, self.cfg.batch_size) for i in range(s.levels + 1)]
        if len(set(sizes)) == 1:
            return str(sizes[0])
        return "by resolution (" + ", ".join(f"{s.start_resolution << i}x{s.start_resolution << i}: {b}"
                                             for i, b in enumerate(sizes)) + ")"

    def generate(self, G, z, labels):
        return G(z, resolution=self.resolution, alpha=self.alpha)

    def discriminate(self, x, labels):
        return self.D(x, alpha=self.alpha)

    def real_batch(self):
        x, labels = super().real_batch()  # [B, C, R_final, R_final]
        return fade_reals(box_downsample(x, self.resolution), self.alpha), labels  # [B, C, R, R]

    def sample(self, n, seed=0, labels=None, truncation=None, ema=True):
        """G's `sample` at the current resolution and fade-in (PGGAN's G is unconditional: no labels)."""
        G = self.G_ema if (ema and self.G_ema is not None) else self.G
        return G.sample(n, seed, truncation, resolution=self.resolution, alpha=self.alpha)

    def state_dict(self) -> dict:
        return {**super().state_dict(),
                "extra": {"growth": asdict(self.schedule), "stage": list(self.stage), "resets": self.optimizer_resets}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        extra = state["extra"]
        if extra["growth"] != asdict(self.schedule):
            raise GanlibError(f"the checkpoint grew with {extra['growth']}, this run with {asdict(self.schedule)}: "
                              f"resume with the same schedule, or use another run folder.")
        self.stage = tuple(extra["stage"])
        self.optimizer_resets = extra["resets"]
        self.resolution, self.alpha = self.schedule.at(self.images_seen)

"""PGGAN: progressive growing with fade-in, WGAN-GP (lambda 10) plus drift (0.001), Adam (0, 0.99) at 1e-3 (on
the CPU 3e-3, below), an EMA of G; shapes offline (smoke, cpu), shapes at 64x64 on a GPU (CelebA or any folder
with --data folder:PATH).

The course's scale-down: far fewer images per phase (the paper: 800k stable + 800k fade per resolution; the
authors' code: 600k + 600k), fewer channels, and an EMA half-life in proportion to the shorter phases. As the
authors do (`minibatch_dict`), the minibatch is larger at the small resolutions, where a step costs little. On
the CPU, with phases about 100x shorter than the paper's, small batches and a learning rate of 3e-3 (the paper:
1e-3) let the networks learn within the short phases.
"""

from ganlib.models import pggan
from ganlib.progressive import GrowthSchedule, ProgressiveTrainer

__all__ = ["FAMILY", "TRAINER", "budget_images", "PRESETS", "model_spec"]

FAMILY = "pggan"
TRAINER = ProgressiveTrainer

_TRAIN = dict(loss="wasserstein", gp_weight=10.0, drift=0.001, lr_g=1e-3, lr_d=1e-3, betas=(0.0, 0.99), eps=1e-8)


def _steps(growth: dict, final_kimg: float, batch: int, resolution: int) -> int:
    """Generator steps to grow to `resolution` and then train `final_kimg` thousand images there, with the
    minibatch of `growth` at each resolution (`batch` where it names none)."""
    schedule = GrowthSchedule(resolution, **growth)
    return schedule.steps_until(schedule.images_until_final() + round(final_kimg * 1000), batch)


def budget_images(preset: dict, resolution: int) -> int:
    """A preset's image budget scaled to another final resolution: the same phases per doubling from 4x4 and
    the same images at the final resolution (what the preset's own steps give at its own)."""
    growth, batch = preset["trainer"]["growth"], preset["train"]["batch_size"]
    own = GrowthSchedule(preset["resolution"], **growth)
    at_final = own.images_before(preset["train"]["steps"], batch) - own.images_until_final()
    return GrowthSchedule(resolution, **growth).images_until_final() + at_final


_SMOKE = dict(stable_kimg=0.064, fade_kimg=0.064, minibatch={4: 32})
_CPU = dict(stable_kimg=8.0, fade_kimg=8.0, minibatch={4: 64, 8: 32, 16: 32})
_GPU = dict(stable_kimg=150.0, fade_kimg=150.0, minibatch={4: 128, 8: 128, 16: 128})  # the authors': 128 to 16x16

PRESETS = {
    "smoke": {"data": "shapes", "resolution": 16, "trainer": {"growth": _SMOKE},
              "G": dict(z_dim=32, fmap_base=64, fmap_max=16), "D": dict(fmap_base=64, fmap_max=16),
              "train": dict(_TRAIN, steps=_steps(_SMOKE, 0.064, 16, 16), batch_size=16, ema_beta=0.9, log_every=2)},
    "cpu": {"data": "shapes", "resolution": 32, "trainer": {"growth": _CPU},
            "G": dict(z_dim=128, fmap_base=128, fmap_max=64), "D": dict(fmap_base=128, fmap_max=64),
            "train": dict(_TRAIN, steps=_steps(_CPU, 28.0, 16, 32), batch_size=16, lr_g=3e-3, lr_d=3e-3,
                          ema_beta=0.99, log_every=100, sample_every=500, checkpoint_every=500)},
    "gpu": {"data": "shapes", "resolution": 64, "trainer": {"growth": _GPU},
            "G": dict(z_dim=256, fmap_base=2048, fmap_max=256), "D": dict(fmap_base=2048, fmap_max=256),
            "train": dict(_TRAIN, steps=_steps(_GPU, 300.0, 64, 64), batch_size=64, ema_beta=0.999, log_every=100,
                          sample_every=2000, checkpoint_every=2000)},
}


def model_spec(preset: dict, data) -> dict:
    """G and D grow to the data's resolution, with its channels; the spec records the networks' version."""
    G = dict(preset["G"], max_resolution=data.resolution, img_channels=data.channels)
    D = dict(preset["D"], max_resolution=data.resolution, img_channels=data.channels)
    return {"family": FAMILY, "version": pggan.VERSION, "G": G, "D": D}

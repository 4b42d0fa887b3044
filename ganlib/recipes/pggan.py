"""PGGAN: progressive growing with fade-in, WGAN-GP (lambda 10) plus drift (0.001), Adam (0, 0.99) at 1e-3 (on
the CPU 3e-3, below), an EMA of G; shapes offline (smoke, cpu), shapes at 64x64 on a GPU (CelebA or any folder
with --data folder:PATH).

The course's scale-down: far fewer images per phase (the paper: 800k stable + 800k fade per resolution; the
authors' code: 600k + 600k), fewer channels, one minibatch size for all resolutions, and an EMA half-life in
proportion to the shorter phases. On the CPU, with phases about 100x shorter than the paper's, a batch of 16
and a learning rate of 3e-3 (the paper: 1e-3) let the networks learn within the short phases.
"""

import math

from ..progressive import ProgressiveTrainer

FAMILY = "pggan"
TRAINER = ProgressiveTrainer

_TRAIN = dict(loss="wasserstein", gp_weight=10.0, drift=0.001, lr_g=1e-3, lr_d=1e-3, betas=(0.0, 0.99), eps=1e-8)


def _steps(growth: dict, final_kimg: float, batch: int, levels: int) -> int:
    """Generator steps to grow through `levels` doublings and then train `final_kimg` at the final size."""
    kimg = levels * (growth["stable_kimg"] + growth["fade_kimg"]) + final_kimg
    return round(kimg * 1000 / batch)


def steps_at(preset: dict, resolution: int) -> int:
    """The steps of a preset's image budget scaled to another final resolution: the same phases per doubling
    from 4x4 and the same images at the final resolution (what the preset's own steps give at its own)."""
    growth, batch = preset["trainer"]["growth"], preset["train"]["batch_size"]
    levels = int(math.log2(preset["resolution"] // 4))
    final_kimg = preset["train"]["steps"] * batch / 1000 - levels * (growth["stable_kimg"] + growth["fade_kimg"])
    return _steps(growth, final_kimg, batch, int(math.log2(resolution // 4)))


_SMOKE = dict(stable_kimg=0.064, fade_kimg=0.064)
_CPU = dict(stable_kimg=6.0, fade_kimg=6.0)
_GPU = dict(stable_kimg=150.0, fade_kimg=150.0)

PRESETS = {
    "smoke": {"data": "shapes", "resolution": 16, "trainer": {"growth": _SMOKE},
              "G": dict(z_dim=32, fmap_base=64, fmap_max=16), "D": dict(fmap_base=64, fmap_max=16),
              "train": dict(_TRAIN, steps=_steps(_SMOKE, 0.064, 16, 2), batch_size=16, ema_beta=0.9, log_every=2)},
    "cpu": {"data": "shapes", "resolution": 32, "trainer": {"growth": _CPU},
            "G": dict(z_dim=128, fmap_base=128, fmap_max=64), "D": dict(fmap_base=128, fmap_max=64),
            "train": dict(_TRAIN, steps=_steps(_CPU, 28.0, 16, 3), batch_size=16, lr_g=3e-3, lr_d=3e-3,
                          ema_beta=0.99, log_every=100, sample_every=500, checkpoint_every=500)},
    "gpu": {"data": "shapes", "resolution": 64, "trainer": {"growth": _GPU},
            "G": dict(z_dim=256, fmap_base=2048, fmap_max=256), "D": dict(fmap_base=2048, fmap_max=256),
            "train": dict(_TRAIN, steps=_steps(_GPU, 300.0, 64, 4), batch_size=64, ema_beta=0.999, log_every=100,
                          sample_every=2000, checkpoint_every=2000)},
}


def model_spec(preset: dict, data) -> dict:
    """G and D grow to the data's resolution, with its channels."""
    G = dict(preset["G"], max_resolution=data.resolution, img_channels=data.channels)
    D = dict(preset["D"], max_resolution=data.resolution, img_channels=data.channels)
    return {"family": FAMILY, "G": G, "D": D}

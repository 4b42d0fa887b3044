"""The vanilla GAN on 2-D toy mixtures: MLP generator and discriminator (PacGAN packing optional).

The cpu preset is the setting in which chapter 01 measures mode collapse: with pack=1 the generator
collapses onto one mode or none; with pack=2 (D judges pairs of samples, `--set pack=2`) it covers all 8.
G learns faster than D (1e-3 against 3e-4; the public Unrolled GAN ring demo gives G 10x D's
rate): a plain D cannot keep up with a G that jumps to whichever spot D rates real, a packing D can. The gpu
preset is the cpu one (2-D points gain nothing from a GPU).
"""

FAMILY = "gan"
NET_OPTIONS = {"pack": "D"}  # --set pack=2 (make_trainer(..., pack=2)): PacGAN2
DATA_KIND = "points"

_NETS = {"G": dict(z_dim=16, hidden=128, depth=2), "D": dict(hidden=128, depth=2, pack=1)}
# threads=1: a step of these small MLPs takes a few milliseconds, and a second CPU thread only adds waiting (half the
# speed with OpenMP waiting passively, a tenth or less with its default wait: docs/benchmarks.md, "CPU threads")
_TRAIN = dict(batch_size=256, lr_g=1e-3, lr_d=3e-4, betas=(0.5, 0.999), lr_decay_start=0.5, threads=1)

PRESETS = {
    "smoke": {"data": "ring8", **_NETS, "train": dict(_TRAIN, steps=50, log_every=10)},
    "cpu": {"data": "ring8", **_NETS, "train": dict(_TRAIN, steps=10000, log_every=200, sample_every=2000)},
    "gpu": {"data": "ring8", **_NETS, "train": dict(_TRAIN, steps=10000, log_every=200, sample_every=2000)},
}

"""BigGAN, class-conditional: digits offline (smoke, cpu), CIFAR-10 on a GPU.

The optimiser follows BigGAN-PyTorch's SA-GAN settings (Adam betas (0, 0.999), eps 1e-6, hinge loss, one D
step per G step, D's rate 4x G's) and the paper's orthogonal regularisation, beta 1e-4 in the paper's formula
(`losses.orthogonal_regularization`; BigGAN-PyTorch's ``--G_ortho 1e-4`` adds half that gradient, the same as
ortho_beta 5e-5 here). Two changes for
a budget of minutes: higher rates (2e-4 / 8e-4 instead of 1e-4 / 4e-4) and an EMA decay of 0.995 from step
500 instead of 0.9999 from step 20,000 (a 0.9999 average would still remember the first steps at the end
of a run this short; in a 1500-step digits run, 0.999 from step 400 lagged far behind G, 0.99 and 0.995
beat it). `python -m gancourse bench biggan-tricks` measures what each trick buys. Every trick is an option of the
shared loop (hinge, orthogonal regularisation, EMA start) or part of the model (truncation and standing
statistics, in its G's `sample`), so BigGAN trains with the plain `Trainer`.
"""

from __future__ import annotations

from ganlib.errors import GanlibError

__all__ = ["FAMILY", "PRESETS", "model_spec"]

FAMILY = "biggan"

_TRAIN = dict(loss="hinge", lr_g=2e-4, lr_d=8e-4, betas=(0.0, 0.999), eps=1e-6, d_steps=1, ortho_beta=1e-4,
              ema_beta=0.995, ema_start=500)

PRESETS = {
    "smoke": {"data": "digits", "resolution": 16,
              "G": dict(conditional=True, z_dim=12, width=8, shared_dim=8, attention=(8,)),
              "D": dict(width=8, attention=(8,)),
              "train": dict(_TRAIN, steps=10, batch_size=16, ema_start=5, log_every=5)},
    "cpu": {"data": "digits", "resolution": 16,
            "G": dict(conditional=True, z_dim=60, width=16, shared_dim=32, attention=(8,)),
            "D": dict(width=16, attention=(8,)),
            "train": dict(_TRAIN, steps=1500, batch_size=32, log_every=100, sample_every=500,
                          checkpoint_every=500)},
    "gpu": {"data": "cifar10", "resolution": 32,
            "G": dict(conditional=True, z_dim=80, width=64, shared_dim=128, attention=(16,)),
            "D": dict(width=64, attention=(16,)),
            "train": dict(_TRAIN, steps=20000, batch_size=64, ema_start=1000, log_every=200, sample_every=1000,
                          checkpoint_every=1000, amp=True)},
}


def model_spec(preset: dict, data) -> dict:
    """The networks' arguments for `data`, which must be labelled images (BigGAN is class-conditional)."""
    from . import default_spec

    if data.kind != "images" or not getattr(data, "num_classes", 0):
        raise GanlibError(f"BigGAN is class-conditional and {data.name} has no labels (or no images): use a "
                          f"labelled image dataset such as digits or cifar10, or a folder with one sub-folder "
                          f"per class.")
    return default_spec(FAMILY, preset, data)


"""StyleGAN2 (and StyleGAN's AdaIN generator, with G's ``style="adain"``) on shapes, digits or an image folder.

Training follows StyleGAN2 (Karras et al. 2020; the authors' StyleGAN2-ADA code): non-saturating logistic
loss, Adam (0, 0.99), R1 on real images every 16 D steps, path-length regularisation (weight 2) every 4 G
steps on half the batch, StyleGAN2's Adam correction for lazy regularisation (lr * k/(k+1), betas^(k/(k+1))),
style-mixing regularisation with probability 0.9, and sampling from an EMA of G.

What the small profiles change, and why: 2 mapping layers instead of 8 (as StyleGAN2-ADA's own small-data
configurations), narrow layers, w of 32 to 128 dimensions, a short EMA half-life (the runs are short). R1 gamma is
1 (StyleGAN2 uses 10 on FFHQ; StyleGAN2-ADA's "auto" rule, 0.0002 res^2 / batch, gives 0.003 here): in a cpu run
with 0.2 (and path-length regularisation on), D's logits ran to about +-3 and G's share of recognised shapes fell
from 0.58 at step 500 to 0.38 at step 1,000.

The cpu preset (shapes at 32x32, 2,000 steps of 64 images) was tuned in short runs scored with the shapes judge,
on one thread: a step of 64 images costs about 1.4x a step of 32 (the layers are small), so batch 64 shows
nearly twice the images in the same time; path-length regularisation is off (as in StyleGAN2-ADA's small-image
`cifar` configuration), which saves about an eighth of a step; and the EMA half-life is 1 kimg (16 steps): G still
changes quickly, and with 4 kimg G_ema recognised 2% of the shapes where G itself recognised 58% (step 500).
"""

from __future__ import annotations

from ganlib.stylegan_training import StyleGANTrainer

FAMILY = "stylegan"
TRAINER = StyleGANTrainer

_TRAIN = dict(loss="nonsaturating", lr_g=0.002, lr_d=0.002, betas=(0.0, 0.99), r1_gamma=1.0, r1_every=16)
_TRAINER = dict(style_mixing=0.9, pl_weight=2.0, pl_every=4, pl_batch_shrink=2, pl_decay=0.01)  # StyleGANOptions

PRESETS = {
    "smoke": {"data": "shapes", "resolution": 16, "trainer": _TRAINER,
              "G": dict(z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32),
              "D": dict(channel_base=256, channel_max=32),
              "train": dict(_TRAIN, steps=8, batch_size=8, ema_half_life_kimg=0.5, log_every=4)},
    "cpu": {"data": "shapes", "resolution": 32, "trainer": dict(_TRAINER, pl_weight=0.0),
            "G": dict(z_dim=64, w_dim=64, mapping_layers=2, channel_base=512, channel_max=64),
            "D": dict(channel_base=512, channel_max=64),
            "train": dict(_TRAIN, steps=2000, batch_size=64, ema_half_life_kimg=1.0, log_every=100,
                          sample_every=500, checkpoint_every=500)},
    "gpu": {"data": "shapes", "resolution": 32, "trainer": _TRAINER,
            "G": dict(z_dim=128, w_dim=128, mapping_layers=8, channel_base=4096, channel_max=256),
            "D": dict(channel_base=4096, channel_max=256),
            "train": dict(_TRAIN, steps=20000, batch_size=64, ema_half_life_kimg=5.0, log_every=200,
                          sample_every=2000, checkpoint_every=2000)},
}

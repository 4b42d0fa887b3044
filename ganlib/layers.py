"""Building blocks shared by the model families, one class or function per paper concept.

Sections, in the order the course meets them:
    PGGAN (Karras et al. 2018): equalized learning rate, pixel normalisation, minibatch standard deviation
    StyleGAN (Karras et al. 2019, 2020): AdaIN, noise injection, modulated convolution
    BigGAN (Brock et al. 2019): conditional batch norm, self-attention, orthogonal regularisation
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# ----------------------------------------------------------------------------------------------------------
# PGGAN


# ----------------------------------------------------------------------------------------------------------
# StyleGAN


# ----------------------------------------------------------------------------------------------------------
# BigGAN

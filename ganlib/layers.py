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


class ConditionalBatchNorm2d(nn.Module):
    r"""Class-conditional batch norm (de Vries et al. 2017, as in BigGAN's `ccbn`).

    Batch norm without its own affine parameters, then a per-sample, per-channel gain and bias predicted
    from a condition vector c (in BigGAN: the shared class embedding concatenated with a chunk of z):

        y = BN(x) * (1 + W_gain c) + W_bias c

    The gain is centred at 1 (``1 +``), so that a condition vector of zeros leaves plain batch norm; without
    the +1 a freshly initialised layer would multiply its features by a random number near 0. The two linear
    maps have no bias (the repo's shared-embedding setting).
    """

    def __init__(
        self,
        num_features: int,  # channels C of x
        cond_dim: int,  # size of the condition vector c
        eps: float = 1e-5,  # BN epsilon (BigGAN-PyTorch)
        momentum: float = 0.1,  # running-statistics momentum (PyTorch's default, as in the repo)
    ):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=False)
        self.gain = nn.Linear(cond_dim, num_features, bias=False)
        self.bias = nn.Linear(cond_dim, num_features, bias=False)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and c.ndim == 2 and c.shape[0] == x.shape[0], (x.shape, c.shape)
        gain = 1 + self.gain(c)  # [N, C]
        bias = self.bias(c)  # [N, C]
        return self.bn(x) * gain[:, :, None, None] + bias[:, :, None, None]  # [N, C, H, W]


class SelfAttention(nn.Module):
    r"""The SAGAN non-local block (Zhang et al. 2019), as BigGAN uses it.

    Queries theta(x) [C/8], keys phi(x) [C/8] and values g(x) [C/2] are 1x1 convolutions; keys and values are
    2x2 max-pooled (a quarter of the positions). Each position attends over all pooled positions:

        beta = softmax_keys(theta^T phi)        [HW, HW/4]
        out  = x + gamma * o(g beta^T)          o: 1x1 conv from C/2 back to C

    gamma is a learned scalar initialised to 0, so the block starts as the identity and the network learns
    how much non-local evidence to mix in.
    """

    def __init__(
        self,
        channels: int,  # C; a multiple of 8
    ):
        super().__init__()
        assert channels % 8 == 0, f"self-attention needs channels divisible by 8, got {channels}"
        self.theta = nn.Conv2d(channels, channels // 8, 1, bias=False)
        self.phi = nn.Conv2d(channels, channels // 8, 1, bias=False)
        self.g = nn.Conv2d(channels, channels // 2, 1, bias=False)
        self.o = nn.Conv2d(channels // 2, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        assert h % 2 == 0 and w % 2 == 0, f"self-attention pools keys 2x2, so H and W must be even, got {h}x{w}"
        theta = self.theta(x).flatten(2)  # [N, C/8, HW]
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)  # [N, C/8, HW/4]
        g = F.max_pool2d(self.g(x), 2).flatten(2)  # [N, C/2, HW/4]
        beta = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # [N, HW, HW/4], each row sums to 1
        attended = (g @ beta.transpose(1, 2)).reshape(n, c // 2, h, w)  # [N, C/2, H, W]
        return x + self.gamma * self.o(attended)


def orthogonal_regularization(module: nn.Module, beta: float = 1e-4) -> torch.Tensor:
    r"""BigGAN's orthogonal regularisation: beta * sum_W || W W^T * (1 - I) ||_F^2.

    Every weight with at least two dimensions is reshaped to W [out, -1]; only the *off-diagonal* entries of
    its Gram matrix W W^T are penalised (the filters should be orthogonal to each other, their norms are
    free), unlike the original form ||W^T W - I||^2 (Brock et al. 2017), which also pins every norm to 1.
    Biases, normalisation parameters and embeddings are excluded (BigGAN skips the shared embedding).

    Its gradient is 4 beta (W W^T * (1 - I)) W. BigGAN-PyTorch adds 2 beta (W W^T * (1 - I)) W straight to
    the gradient, i.e. it regularises with beta / 2 in this notation.

    Weights under a spectral-norm parametrisation are penalised in their stored, unnormalised form, as in
    the BigGAN code. Returns a scalar tensor (0 when the module has no such weight).
    """
    excluded = {id(p) for m in module.modules() if isinstance(m, (nn.Embedding, nn.modules.batchnorm._NormBase,
                                                                    nn.GroupNorm, nn.LayerNorm))
                for p in m.parameters()}
    total = None
    for p in module.parameters():
        if p.ndim < 2 or id(p) in excluded:
            continue
        w = p.flatten(1)  # [out, in * kh * kw]
        gram = w @ w.T  # [out, out]
        off_diagonal = gram * (1 - torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype))
        term = off_diagonal.pow(2).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros((), device=next(module.parameters(), torch.zeros(())).device)
    return beta * total

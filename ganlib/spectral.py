"""Spectral normalisation (Miyato et al. 2018), as BigGAN uses it in both networks: every layer's weight W is
divided by an estimate of its largest singular value sigma(W), so each layer is at most 1-Lipschitz; the
estimate is one `power_iteration` step per training forward pass from the u the layer keeps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["power_iteration", "SpectralNorm", "spectral_norm"]


def power_iteration(weight: torch.Tensor, u: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the power iteration that spectral normalisation runs at every training forward pass, in the
    order of Miyato et al. (2018), Algorithm 1, and BigGAN-PyTorch: v = W^T u / ||W^T u||, u' = W v / ||W v||,
    sigma = u'^T W v (= ||W v||). (PyTorch's `parametrizations.spectral_norm` updates u first, then v, and reads
    sigma half a step later.) u' and v are constants for the gradient, as in the paper: sigma's gradient with
    respect to W is u' v^T.

    Args:
        weight: W as a matrix [out, in] (a conv weight flattened to [out, in * k * k]).
        u: the previous step's left singular vector estimate [out].
    Returns (sigma, u'): the estimate of W's largest singular value (a scalar) and the new u' [out].
    """
    assert weight.ndim == 2 and u.shape == weight.shape[:1], (weight.shape, u.shape)
    with torch.no_grad():
        v = F.normalize(weight.T @ u, dim=0, eps=eps)  # [in]
        u = F.normalize(weight @ v, dim=0, eps=eps)  # [out]
    return u @ weight @ v, u


class SpectralNorm(nn.Module):
    """Spectral normalisation (Miyato et al. 2018) as a parametrization: the layer uses W / sigma(W), sigma
    estimated by one `power_iteration` step from the stored u. A training-mode forward keeps the new u (u starts
    as a random unit vector, with no warm-up, as in BigGAN-PyTorch); an eval-mode forward takes the same step
    without keeping it, so evaluating moves nothing. Register it with `spectral_norm`.

    A state dict written with PyTorch's `parametrizations.spectral_norm` (the same `_u`, plus a `_v` this one
    does not need) loads into it.
    """

    def __init__(
        self,
        weight: torch.Tensor,  # the weight to normalise: [out, ...], read as a matrix [out, -1]
        eps: float = 1e-12,  # added to the norms of the power iteration (BigGAN-PyTorch's SN_eps: 1e-6)
    ):
        super().__init__()
        self.eps = eps
        self.register_buffer("_u", F.normalize(torch.randn(weight.shape[0], dtype=weight.dtype), dim=0, eps=eps))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        sigma, u = power_iteration(weight.flatten(1), self._u, self.eps)
        if self.training:
            self._u.copy_(u)
        return weight / sigma

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "_v", None)  # PyTorch's spectral norm also stores v; the step recomputes it
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def spectral_norm(module: nn.Module, eps: float = 1e-12) -> nn.Module:
    """Spectrally normalise `module.weight` (a conv, linear or embedding layer) with `SpectralNorm`; returns the
    module. Its raw weight is then ``module.parametrizations.weight.original``."""
    assert isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)), \
        f"spectral_norm reads the weight as [out, -1]: a Conv2d, Linear or Embedding, got {type(module).__name__}"
    torch.nn.utils.parametrize.register_parametrization(module, "weight", SpectralNorm(module.weight, eps))
    return module

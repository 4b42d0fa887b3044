import math

import pytest
import torch
import torch.nn.functional as F

from ganlib import layers
from ganlib.errors import GanlibError

# ----------------------------------------------------------------------------------------------------------
# PGGAN: equalized learning rate, pixel norm, minibatch stddev


@pytest.mark.parametrize("lr_mul,gain", [(1.0, math.sqrt(2)), (0.01, 1.0)])
def test_equalized_linear_is_a_linear_layer_with_scaled_weights(lr_mul, gain):
    torch.manual_seed(0)
    layer = layers.EqualizedLinear(64, 32, gain=gain, lr_mul=lr_mul, bias_init=0.5)
    with torch.no_grad():
        layer.bias.add_(torch.randn(32) / lr_mul)
    x = torch.randn(5, 64)
    c = gain * lr_mul / math.sqrt(64)
    expected = x @ (layer.weight * c).T + layer.bias * lr_mul
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)
    # stored weights are N(0, 1/lr_mul^2); the effective ones have He's std gain / sqrt(fan_in)
    assert abs(layer.weight.std().item() * lr_mul - 1) < 0.05
    assert abs((layer.weight * c).std().item() - gain / 8) < 0.05 * gain / 8


def test_equalized_bias_is_not_scaled_by_the_he_constant():
    layer = layers.EqualizedLinear(1000, 3, bias_init=0.25)
    torch.testing.assert_close(layer(torch.zeros(2, 1000)), torch.full((2, 3), 0.25))
    slow = layers.EqualizedLinear(1000, 3, lr_mul=0.01, bias_init=0.25)  # stored 25, applied x 0.01
    torch.testing.assert_close(slow(torch.zeros(2, 1000)), torch.full((2, 3), 0.25))
    assert torch.allclose(slow.bias, torch.full((3,), 25.0))


def test_equalized_conv_matches_conv2d_with_scaled_weights():
    torch.manual_seed(0)
    layer = layers.EqualizedConv2d(6, 4, 3)
    with torch.no_grad():
        layer.bias.normal_()
    ref = torch.nn.Conv2d(6, 4, 3, padding=1)
    with torch.no_grad():
        ref.weight.copy_(layer.weight * math.sqrt(2) / math.sqrt(6 * 9))
        ref.bias.copy_(layer.bias)
    x = torch.randn(2, 6, 8, 8)
    torch.testing.assert_close(layer(x), ref(x), rtol=1e-5, atol=1e-5)
    rgb = layers.EqualizedConv2d(6, 3, 1, gain=1.0)
    torch.testing.assert_close(rgb(x), F.conv2d(x, rgb.weight / math.sqrt(6)) + rgb.bias[:, None, None])


def test_equalized_lr_scales_the_gradient_of_the_stored_weight():
    # what "equalized" means: d loss / d stored weight = c * d loss / d effective weight
    torch.manual_seed(1)
    layer = layers.EqualizedLinear(50, 7)
    x = torch.randn(9, 50)
    layer(x).square().sum().backward()
    w_eff = (layer.weight.detach() * layer.weight_gain).requires_grad_(True)
    F.linear(x, w_eff, layer.bias.detach()).square().sum().backward()
    torch.testing.assert_close(layer.weight.grad, w_eff.grad * layer.weight_gain)


def test_equalized_conv_and_lrelu_keep_the_second_moment():
    torch.manual_seed(0)
    x = torch.randn(16, 64, 16, 16)
    y = F.leaky_relu(layers.EqualizedConv2d(64, 64, 3, bias=False)(x), 0.2)
    # He init: E[y^2] ~ E[x^2] (1 + 0.2^2) / 2 * 2 = 1.04 (edges, with zero padding, a bit less)
    assert 0.85 < y.pow(2).mean().item() < 1.2


def test_pixel_norm_unit_rms_over_channels():
    torch.manual_seed(0)
    x = torch.randn(3, 8, 5, 5) * torch.rand(3, 1, 5, 5) * 10  # a different scale at every pixel
    y = layers.pixel_norm(x)
    torch.testing.assert_close(y.pow(2).mean(dim=1), torch.ones(3, 5, 5), rtol=1e-5, atol=1e-5)
    # each pixel's vector keeps its direction, and per-pixel positive scaling does not matter
    torch.testing.assert_close(layers.pixel_norm(x * torch.rand(3, 1, 5, 5) + 0), y, rtol=1e-4, atol=1e-5)
    z = torch.randn(4, 512)
    torch.testing.assert_close(layers.pixel_norm(z), z / z.pow(2).mean(1, keepdim=True).add(1e-8).sqrt())
    zero = layers.pixel_norm(torch.zeros(1, 4, 2, 2))
    assert torch.equal(zero, torch.zeros(1, 4, 2, 2))  # eps keeps it finite


def _mbstd_by_hand(x, group_size):
    """The authors' definition, one group at a time: group k holds samples k, k + M, k + 2M, ... (M = N/G)."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    m = n // g
    out = torch.empty(n, 1, h, w)
    for k in range(m):
        members = x[k::m]  # [G, C, H, W]
        var = ((members - members.mean(0)) ** 2).mean(0)  # biased
        out[k::m] = (var + 1e-8).sqrt().mean()
    return torch.cat([x, out], dim=1)


@pytest.mark.parametrize("n", [8, 4, 2, 12])
def test_minibatch_stddev_matches_the_definition(n):
    torch.manual_seed(n)
    x = torch.randn(n, 5, 3, 3) * torch.arange(1, n + 1).float()[:, None, None, None]
    y = layers.minibatch_stddev(x)
    assert y.shape == (n, 6, 3, 3)
    torch.testing.assert_close(y, _mbstd_by_hand(x, 4))


def test_minibatch_stddev_uses_strided_groups_and_biased_variance():
    # 8 samples: groups {0, 2, 4, 6} and {1, 3, 5, 7}; even samples are identical, so their group's std is 0
    x = torch.randn(8, 2, 1, 1)
    x[0::2] = x[0]
    y = layers.minibatch_stddev(x)[:, -1, 0, 0]
    assert torch.allclose(y[0::2], torch.full((4,), 1e-4)) and (y[1::2] > 0.01).all()
    # biased: for values -1, 1, -1, 1 the std is exactly 1 (the unbiased one would be 1.155)
    x = torch.tensor([-1.0, 1.0, -1.0, 1.0]).reshape(4, 1, 1, 1)
    torch.testing.assert_close(layers.minibatch_stddev(x)[:, 1], torch.ones(4, 1, 1), rtol=1e-6, atol=1e-6)


def test_minibatch_stddev_batch_must_be_a_multiple_of_the_group():
    with pytest.raises(GanlibError, match="batch size 6 is not a multiple of the group size 4"):
        layers.minibatch_stddev(torch.randn(6, 3, 4, 4))
    assert layers.minibatch_stddev(torch.randn(3, 3, 4, 4)).shape == (3, 4, 4, 4)  # N < 4: one group of N


def test_minibatch_stddev_several_channels():
    torch.manual_seed(0)
    x = torch.randn(8, 6, 2, 2)
    y = layers.minibatch_stddev(x, group_size=4, num_channels=2)
    assert y.shape == (8, 8, 2, 2)
    torch.testing.assert_close(y[:, 6:7], _mbstd_by_hand(x[:, :3], 4)[:, 3:])
    torch.testing.assert_close(y[:, 7:8], _mbstd_by_hand(x[:, 3:], 4)[:, 3:])

"""Chapter 03's checks pass correct answers written the way a student would, and name each typical mistake."""

import math

import pytest
import torch
import torch.nn.functional as F
from check_helpers import lenient, message  # noqa: F401  (lenient is an autouse fixture)

from gancourse import checks, recipes
from ganlib import layers
from ganlib.models import stylegan as sg

# ----------------------------------------------------------------------------------------------------------
# AdaIN


def adain_variant(x, style, dims=(2, 3), unbiased=False, centred=True, swap=False, normalise=True):
    c = x.shape[1]
    ys, yb = style[:, :c, None, None], style[:, c:, None, None]
    if swap:
        ys, yb = yb, ys
    if normalise:
        x = (x - x.mean(dims, keepdim=True)) / (x.var(dims, keepdim=True, unbiased=unbiased) + 1e-8).sqrt()
    return ((1 + ys) if centred else ys) * x + yb


def test_adain_correct_answers_pass():
    assert checks.check_adain(adain_variant).passed
    c = lambda x: x.shape[1]
    inorm = lambda x, s: (1 + s[:, :c(x), None, None]) * F.instance_norm(x, eps=1e-8) + s[:, c(x):, None, None]
    assert checks.check_adain(inorm).passed  # another correct way


@pytest.mark.parametrize("expected,kwargs", [
    ("over the batch axis", dict(dims=(0, 2, 3))),
    ("over the channels too", dict(dims=(1, 2, 3))),
    ("unbiased", dict(unbiased=True)),
    ("not centred at 1", dict(centred=False)),
    ("swapped", dict(swap=True)),
    ("without normalising", dict(normalise=False)),
])
def test_adain_mistakes(expected, kwargs):
    assert expected in message(checks.check_adain(lambda x, s: adain_variant(x, s, **kwargs)))


def test_adain_wrong_shape():
    assert "shape" in message(checks.check_adain(lambda x, s: adain_variant(x, s)[0]))


# ----------------------------------------------------------------------------------------------------------
# Mapping network


def mapping_student(z, weights, biases, lr_mul=0.01):
    x = z / torch.sqrt(torch.mean(z ** 2, dim=1, keepdim=True) + 1e-8)
    for W, b in zip(weights, biases):
        x = F.linear(x, W * lr_mul / math.sqrt(W.shape[1]), b * lr_mul)
        x = F.leaky_relu(x, 0.2) * math.sqrt(2)
    return x


def test_mapping_network_correct_answer_passes():
    assert checks.check_mapping_network(mapping_student).passed


@pytest.mark.parametrize("expected,kwargs", [
    ("unnormalised", dict(norm="none")),
    ("unit length", dict(norm="unit_length")),
    ("over the batch axis", dict(norm="batch")),
    ("without the learning-rate multiplier", dict(weight_lr=False)),
    ("multiply each bias by lr_mul", dict(bias_lr=False)),
    ("1/sqrt(fan_in)", dict(fan_in=False)),
    ("gain sqrt(2)", dict(gain=1.0)),
    ("default slope is 0.01", dict(slope=0.01)),
    ("ReLU", dict(slope=0.0)),
    ("last layer", dict(last_activation=False)),
])
def test_mapping_network_mistakes(expected, kwargs):
    from gancourse.checks.stylegan import mapping_reference

    fn = lambda z, W, b, lr_mul: mapping_reference(z, W, b, lr_mul, **kwargs)
    assert expected in message(checks.check_mapping_network(fn))


def test_the_library_mapping_network_is_the_written_out_formula():
    from gancourse.checks.stylegan import mapping_reference

    torch.manual_seed(0)
    mapping = sg.MappingNetwork(6, 4, 3, lr_mul=0.01).eval()
    with torch.no_grad():
        for fc in mapping.fcs:
            fc.bias.normal_(0, 30)
        z = torch.randn(5, 6)
        ref = mapping_reference(z, [fc.weight for fc in mapping.fcs], [fc.bias for fc in mapping.fcs], 0.01)
        torch.testing.assert_close(mapping(z), ref)


# ----------------------------------------------------------------------------------------------------------
# Style mixing


def mix_student(ws_a, ws_b, crossover):
    out = ws_a.clone()
    out[:, crossover:] = ws_b[:, crossover:]
    return out


def test_mix_styles_correct_answer_passes():
    assert checks.check_mix_styles(mix_student).passed
    assert checks.check_mix_styles(sg.mix_styles).passed


@pytest.mark.parametrize("expected,fn", [
    ("off by one", lambda a, b, k: mix_student(a, b, min(k + 1, a.shape[1]))),
    ("swapped", lambda a, b, k: mix_student(b, a, k)),
    ("batch axis", lambda a, b, k: torch.cat([a[:k], b[k:]], dim=0)),
    ("w features", lambda a, b, k: torch.cat([a[:, :, :k], b[:, :, k:]], dim=2)),
    ("in place", lambda a, b, k: a.index_copy_(1, torch.arange(k, a.shape[1]), b[:, k:])),
])
def test_mix_styles_mistakes(expected, fn):
    assert expected in message(checks.check_mix_styles(fn))


# ----------------------------------------------------------------------------------------------------------
# Truncation


def truncate_student(G, z, psi):
    w = G.mapping(z)
    w = G.w_avg + psi * (w - G.w_avg)
    return w.unsqueeze(1).repeat(1, G.num_ws, 1)


def test_truncate_w_correct_answer_passes():
    assert checks.check_truncate_w(truncate_student).passed


@pytest.mark.parametrize("expected,fn", [
    ("truncated z, not w", lambda G, z, psi: sg.broadcast(G.mapping(psi * z), G.num_ws)),
    ("towards 0", lambda G, z, psi: sg.broadcast(psi * G.mapping(z), G.num_ws)),
    ("wrong way round", lambda G, z, psi: sg.broadcast(G.mapping(z).lerp(G.w_avg.expand(len(z), -1), psi), G.num_ws)),
    ("shape [N, G.num_ws, w_dim]", lambda G, z, psi: G.w_avg + psi * (G.mapping(z) - G.w_avg)),
    ("changed G.w_avg", lambda G, z, psi: truncate_student(G.train(), z, psi)),
])
def test_truncate_w_mistakes(expected, fn):
    assert expected in message(checks.check_truncate_w(fn))


def _modconv(axes=(2, 3, 4), modulate=True, demodulate_with_styles=True, skip_demod=False):
    """A student's modulated convolution, by grouped convolution (an independent way to compute it)."""

    def fn(x, weight, styles, demodulate=True):
        n, i, h, w = x.shape
        o, k = weight.shape[0], weight.shape[-1]
        scale = styles if modulate else torch.ones(n, i)
        ws = weight[None] * scale[:, None, :, None, None]  # [N, O, I, k, k]
        if demodulate and not skip_demod:
            base = ws if demodulate_with_styles else weight[None].expand_as(ws)
            ws = ws / (base.square().sum(dim=axes, keepdim=True) + 1e-8).sqrt()
        out = F.conv2d(x.reshape(1, n * i, h, w), ws.reshape(n * o, i, k, k), padding=k // 2, groups=n)
        return out.reshape(n, o, h, w)

    return fn


def test_modulated_conv2d_reference_and_mistakes():
    assert checks.check_modulated_conv2d(layers.modulated_conv2d).passed
    assert checks.check_modulated_conv2d(_modconv()).passed  # grouped convolution: another correct way
    for fn, words in [(_modconv(skip_demod=True), "not demodulated"), (_modconv(axes=(1, 3, 4)), "wrong axis"),
                      (_modconv(axes=(1, 2, 3, 4)), "whole per-sample weight"),
                      (_modconv(demodulate_with_styles=False), "unstyled weight"),
                      (_modconv(modulate=False, demodulate_with_styles=False), "styles are not used")]:
        assert words in message(checks.check_modulated_conv2d(fn)), words
    always = lambda x, weight, styles, demodulate=True: _modconv()(x, weight, styles, True)
    assert "demodulate=False" in message(checks.check_modulated_conv2d(always))


def _mixing(low=1, high_extra=0, per_sample=False, track_second=False, when="below", order="u-crossover-z2"):
    """A student's style-mixing step, written independently of the check's variants."""

    def fn(G, z, probability, generator):
        w = G.mapping(z)
        ws = w[:, None].repeat(1, G.num_ws, 1)
        if probability <= 0:
            return ws
        u = torch.rand((), generator=generator).item()
        if (u < probability) if when == "below" else (u > probability) if when == "above" else True:
            if order == "u-crossover-z2":
                cut = torch.randint(low, G.num_ws + high_extra, (len(z),) if per_sample else (), generator=generator)
                z2 = torch.randn(z.shape, generator=generator)
            else:
                z2 = torch.randn(z.shape, generator=generator)
                cut = torch.randint(low, G.num_ws + high_extra, (), generator=generator)
            w2 = G.mapping(z2, update_w_avg=track_second)
            layers_after = torch.arange(G.num_ws)[None, :] >= cut.reshape(-1, 1)  # [N or 1, num_ws]
            ws = torch.where(layers_after[..., None], w2[:, None], ws)
        return ws

    return fn


def test_mixing_regularisation_reference_and_mistakes():
    assert checks.check_mixing_regularisation(sg.mixing_regularisation).passed
    assert checks.check_mixing_regularisation(_mixing()).passed  # written another way
    for fn, words in [(_mixing(low=0), "[0, num_ws)"), (_mixing(high_extra=1), "[1, num_ws]"),
                      (_mixing(per_sample=True), "its own crossover"), (_mixing(track_second=True), "moved G.w_avg"),
                      (_mixing(when="above"), "u > probability"), (_mixing(when="always"), "every batch is mixed"),
                      (_mixing(order="z2-first"), "in this order")]:
        assert words in message(checks.check_mixing_regularisation(fn)), words


def test_trainer_mixes_styles_with_the_library_function():
    """StyleGANTrainer.styles is models.stylegan.mixing_regularisation on the trainer's generator: same ws,
    same draws (so resuming a run reproduces its crossovers)."""
    import copy

    trainer = recipes.make_trainer("stylegan", profile="smoke")
    z = torch.randn(4, trainer.G.z_dim)
    G_copy, rng_copy = copy.deepcopy(trainer.G), copy.deepcopy(trainer.rng)
    expected = sg.mixing_regularisation(G_copy, z, trainer.options.style_mixing, rng_copy)
    torch.testing.assert_close(trainer.styles(trainer.G, z), expected)
    assert trainer.options.style_mixing == 0.9


# ----------------------------------------------------------------------------------------------------------
# Noise injection and the constant input


def noise_student(x, strength, bias, generator, maps="image", scale="channel", where="before", gain=2 ** 0.5):
    """A noise layer as a student writes it; the keywords give its typical mistakes."""
    n, c, h, w = x.shape
    size = {"image": (n, 1, h, w), "channel": (n, c, h, w), "batch": (1, 1, h, w)}[maps]
    noise = torch.randn(size, generator=generator)  # one draw, as the exercise asks
    s = {"channel": strength.view(1, c, 1, 1), "one": strength.mean(), "width": strength}[scale]
    b = bias.view(1, c, 1, 1)
    if where == "after":
        return F.leaky_relu(x + b, 0.2) * gain + s * noise
    return F.leaky_relu(x + s * noise + b, 0.2) * gain


def test_noise_layer_correct_answers_pass():
    assert checks.check_noise_layer(noise_student).passed

    def through_ganlib(x, strength, bias, generator):  # another correct way: ganlib's own layer, noise per image
        n, c, h, _ = x.shape
        noise = torch.randn(n, 1, h, h, generator=generator)
        return sg.lrelu(x + strength[None, :, None, None] * noise + bias[None, :, None, None])

    assert checks.check_noise_layer(through_ganlib).passed


@pytest.mark.parametrize("expected,kwargs", [
    ("each channel gets its own noise map", dict(maps="channel")),
    ("every image gets the same noise map", dict(maps="batch")),
    ("the strength is one number", dict(scale="one")),
    ("broadcasts along W", dict(scale="width")),
    ("added after the activation", dict(where="after")),
    ("gain sqrt(2) is missing", dict(gain=1.0)),
])
def test_noise_layer_mistakes(expected, kwargs):
    assert expected in message(checks.check_noise_layer(lambda *a: noise_student(*a, **kwargs)))


def test_noise_layer_unscaled_noise():
    def unscaled(x, strength, bias, generator):
        n, c, h, w = x.shape
        return sg.lrelu(x + torch.randn(n, 1, h, w, generator=generator) + bias[None, :, None, None])

    assert "not scaled by the learned strength" in message(checks.check_noise_layer(unscaled))


def test_constant_input_correct_answers_pass():
    assert checks.check_constant_input(lambda const, w: const[None].expand(w.shape[0], -1, -1, -1)).passed
    assert checks.check_constant_input(lambda const, w: const.repeat(len(w), 1, 1, 1)).passed
    assert checks.check_constant_input(lambda const, w: torch.stack([const] * w.shape[0])).passed


@pytest.mark.parametrize("expected,fn", [
    ("one copy for the whole batch", lambda const, w: const[None]),
    ("w_dim", lambda const, w: const[None].expand(w.shape[1], -1, -1, -1)),
    ("add the batch axis", lambda const, w: const),
    ("stacked along the channels", lambda const, w: const.repeat(w.shape[0], 1, 1)[None]),
    ("does not depend on w", lambda const, w: const[None] * w[:, :1, None, None]),
    ("does not depend on w", lambda const, w: torch.randn(w.shape[0], *const.shape)),
    ("should be const itself", lambda const, w: torch.zeros(w.shape[0], *const.shape)),
])
def test_constant_input_mistakes(expected, fn):
    assert expected in message(checks.check_constant_input(fn))

"""Chapter 02's checks: the reference passes, and each typical mistake gets its own message."""

import torch
import torch.nn.functional as F
from check_helpers import lenient, message  # noqa: F401  (an autouse fixture: failures are results here)

from gancourse import checks
from ganlib import layers
from ganlib.models import pggan


def up(x):
    return F.interpolate(x, scale_factor=2, mode="nearest")


FADE_IN = [
    (lambda old, new, a: a * up(old) + (1 - a) * new, "wrong way"),
    (lambda old, new, a: (1 - a) * F.interpolate(old, scale_factor=2, mode="bilinear") + a * new, "bilinear"),
    (lambda old, new, a: up(old) + a * new, "do not sum to 1"),
    (lambda old, new, a: (1 - a) * old + a * F.avg_pool2d(new, 2), "upsample `old`"),
    (lambda old, new, a: (1 - a) * old + a * new, "your code raised RuntimeError"),
    (lambda old, new, a: 0.5 * (up(old) + new), "alpha is ignored"),
]


def test_fade_in_reference_and_variants():
    assert checks.check_fade_in(pggan.fade_in).passed
    assert checks.check_fade_in(lambda old, new, a: torch.lerp(old.repeat_interleave(2, 2).repeat_interleave(2, 3),
                                                                new, a)).passed  # another correct way
    for fn, words in FADE_IN:
        result = checks.check_fade_in(fn)
        assert not result.passed and words in result.message, (words, result.message)


def _mbstd(groups="strided", unbiased=False, centre=True, eps=1e-8, over="group", concat=True, average=True):
    def fn(x, group_size=4):
        n, c, h, w = x.shape
        g = min(group_size, n)
        if over == "channels":
            s = (x.var(1, unbiased=unbiased, keepdim=True) + eps).sqrt().mean((1, 2, 3), keepdim=True)
            s = s.expand(n, 1, h, w)
        else:
            if over == "batch":
                y, axis = x[None], 1
            elif groups == "strided":
                y, axis = x.reshape(g, n // g, c, h, w), 0
            else:
                y, axis = x.reshape(n // g, g, c, h, w), 1
            m = y.mean(axis, keepdim=True) if centre else 0
            var = ((y - m) ** 2).sum(axis) / (y.shape[axis] - int(unbiased))
            s = (var + eps).sqrt()  # [groups, C, H, W]
            if not average:
                s = s.repeat(g, 1, 1, 1) if groups == "strided" and over != "batch" else s.expand(n, -1, -1, -1)
                return torch.cat([x, s], 1)
            s = s.mean((1, 2, 3))
            if over == "batch":
                s = s.expand(n)
            else:
                s = s.repeat(g) if groups == "strided" else s.repeat_interleave(g)
            s = s[:, None, None, None].expand(n, 1, h, w)
        return torch.cat([x, s], 1) if concat else s
    return fn


MBSTD = [
    (dict(groups="contiguous"), "consecutive samples"),
    (dict(unbiased=True), "unbiased variance"),
    (dict(groups="contiguous", unbiased=True), "two mistakes"),
    (dict(over="batch"), "whole batch"),
    (dict(over="channels"), "channel axis"),
    (dict(centre=False), "subtract the group mean"),
    (dict(eps=0.0), "add eps"),
    (dict(concat=False), "concatenate it to x"),
    (dict(average=False), "one std map per channel"),
]


def test_minibatch_stddev_reference_and_variants():
    assert checks.check_minibatch_stddev(layers.minibatch_stddev).passed
    assert checks.check_minibatch_stddev(_mbstd()).passed  # the helper's correct setting agrees
    for kwargs, words in MBSTD:
        result = checks.check_minibatch_stddev(_mbstd(**kwargs))
        assert not result.passed and words in result.message, (kwargs, result.message)


PIXEL_NORM = [
    (lambda x: x / (x.pow(2).mean((2, 3), keepdim=True) + 1e-8).sqrt(), "spatial axes"),
    (lambda x: x / (x.pow(2).mean(0, keepdim=True) + 1e-8).sqrt(), "batch axis"),
    (lambda x: x / (x.pow(2).mean((1, 2, 3), keepdim=True) + 1e-8).sqrt(), "whole sample"),
    (lambda x: F.normalize(x, dim=1), "L2 norm"),
    (lambda x: x / (x.pow(2).mean(1, keepdim=True) + 1e-8), "mean square"),
    (lambda x: F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], eps=1e-8).permute(0, 3, 1, 2), "subtract the mean"),
    (lambda x: x / x.pow(2).mean(1, keepdim=True).sqrt(), "add eps"),
]


def test_pixel_norm_reference_and_variants():
    assert checks.check_pixel_norm(layers.pixel_norm).passed
    for fn, words in PIXEL_NORM:
        result = checks.check_pixel_norm(fn)
        assert not result.passed and words in result.message, (words, result.message)


def test_registered_for_the_grader():
    for name in ("fade_in", "minibatch_stddev", "pixel_norm"):
        assert name in checks.CHECKS


def test_fade_reals_reference_and_mistakes():
    down_up = lambda x: F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
    assert checks.check_fade_reals(pggan.fade_reals).passed
    assert checks.check_fade_reals(lambda x, a: a * x + (1 - a) * down_up(x)).passed  # another correct way
    for fn, words in [
        (lambda x, a: a * down_up(x) + (1 - a) * x, "wrong way"),
        (lambda x, a: (1 - a) * F.interpolate(x[:, :, ::2, ::2], scale_factor=2) + a * x, "dropping pixels"),
        (lambda x, a: (1 - a) * F.avg_pool2d(x, 2) + a * F.avg_pool2d(x, 2), "half the resolution"),
        (lambda x, a: down_up(x), "alpha is ignored"),
    ]:
        assert words in message(checks.check_fade_reals(fn)), words


def _stage(images, final, start, stable, fade, order="stable-fade", report="new", cap=True):
    """A student's schedule, written independently: (resolution, alpha) after `images` images."""
    phase = (stable + fade) * 1000
    done, into = int(images // phase), images % phase
    stable_part, fade_part = (stable * 1000, fade * 1000) if order == "stable-fade" else (fade * 1000, stable * 1000)
    resolution = start * 2**done
    if cap and resolution >= final:
        return final, 1.0
    first_is_fade = order == "fade-stable"
    fading = (into < stable_part) if first_is_fade else (into >= stable_part)
    if not fading:
        return resolution, 1.0
    alpha = (into if first_is_fade else into - stable_part) / (fade * 1000)
    return (resolution, 1.0) if report == "old" else (resolution * 2, alpha)


def test_growth_stage_reference_and_mistakes():
    from ganlib.progressive import GrowthSchedule

    assert checks.check_growth_stage(lambda i, f, s, st, fa: GrowthSchedule(f, s, st, fa).at(i)).passed
    assert checks.check_growth_stage(_stage).passed  # written another way
    for kw, words in [(dict(order="fade-stable"), "fades in first"), (dict(report="old"), "NEW resolution"),
                      (dict(cap=False), "past final_resolution")]:
        fn = lambda *args, kw=kw: _stage(*args, **kw)
        assert words in message(checks.check_growth_stage(fn)), words
    assert "should return a pair" in message(checks.check_growth_stage(lambda *args: 8))


def _equalized_conv(fan="in", scaled=True, bias_scaled=False, gain_used=True, he_gain=True, padding=True):
    """A student's equalized conv forward, written independently, with one of the typical mistakes switched on."""

    def fn(x, weight, bias, gain=2 ** 0.5):
        cout, cin, k, _ = weight.shape
        gain = gain if gain_used else 2 ** 0.5
        gain = 1.0 if not he_gain and gain == 2 ** 0.5 else gain
        c = gain / {"in": cin * k * k, "out": cout * k * k, "channels": cin}[fan] ** 0.5 if scaled else 1.0
        return F.conv2d(x, weight * c, bias * c if bias_scaled else bias, padding=k // 2 if padding else 0)

    return fn


def test_equalized_conv2d_reference_and_mistakes():
    def ganlib_layer(x, weight, bias, gain=2 ** 0.5):
        layer = layers.EqualizedConv2d(weight.shape[1], weight.shape[0], weight.shape[-1], gain=gain)
        layer.load_state_dict({"weight": weight, "bias": bias})
        return layer(x)

    assert checks.check_equalized_conv2d(ganlib_layer).passed
    assert checks.check_equalized_conv2d(_equalized_conv()).passed  # written another way
    for kw, words in [(dict(fan="out"), "fan-out"), (dict(fan="channels"), "not C_in alone"),
                      (dict(scaled=False), "at every forward pass"), (dict(bias_scaled=True), "bias is scaled"),
                      (dict(gain_used=False), "gain argument is ignored"), (dict(he_gain=False), "sqrt(2) is missing"),
                      (dict(padding=False), "pad by k // 2")]:
        assert words in message(checks.check_equalized_conv2d(_equalized_conv(**kw))), kw


def _fade_d(order="features", way="right", down="average", old_first="down", alpha_used=True):
    """A student's D fade-in, written independently, with one typical mistake switched on."""

    def fn(x, alpha, from_rgb_new, block, from_rgb_old):
        if order == "images":
            low = F.avg_pool2d(x, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)
            return block(from_rgb_new((1 - alpha) * low + alpha * x))
        small = F.avg_pool2d(x, 2) if down == "average" else x[:, :, ::2, ::2]
        old = from_rgb_old(small) if old_first == "down" else F.avg_pool2d(from_rgb_old(x), 2)
        new = block(from_rgb_new(x))
        a = alpha if alpha_used else 0.5
        return (1 - a) * old + a * new if way == "right" else a * old + (1 - a) * new

    return fn


def test_fade_in_discriminator_reference_and_mistakes():
    assert checks.check_fade_in_discriminator(pggan.fade_in_discriminator).passed
    assert checks.check_fade_in_discriminator(_fade_d()).passed
    for kw, words in [(dict(way="wrong"), "wrong way"), (dict(order="images"), "before fromRGB"),
                      (dict(down="drop"), "dropping pixels"), (dict(old_first="rgb"), "averages after"),
                      (dict(alpha_used=False), "alpha is ignored")]:
        assert words in message(checks.check_fade_in_discriminator(_fade_d(**kw))), kw
    no_block = lambda x, a, new, block, old: new(x)
    assert "stops after fromRGB" in message(checks.check_fade_in_discriminator(no_block))


def test_new_checks_registered_for_the_grader():
    assert checks.CHECKS["equalized_conv2d"] is checks.check_equalized_conv2d
    assert checks.CHECKS["fade_in_discriminator"] is checks.check_fade_in_discriminator

"""Checks of chapter 02 (PGGAN): fade-in, minibatch standard deviation, pixel normalisation."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from ganlib import layers
from ganlib.models import pggan
from ganlib.progressive import GrowthSchedule

from .core import CheckResult, Mistake, answers, close, diagnose, finite, run_check


def _tensor_out(out, what: str, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise Mistake(f"{what} should return a torch tensor, got {type(out).__name__}.")
    if tuple(out.shape) != shape:
        raise Mistake(f"{what} should return a tensor of shape {list(shape)}, got {list(out.shape)}.")
    return out


def check_fade_in(fn: Callable) -> CheckResult:
    """fn(old [N, C, R/2, R/2], new [N, C, R, R], alpha) -> (1 - alpha) * upsample_nearest(old) + alpha * new."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        g = torch.Generator().manual_seed(0)
        for n, c, r, alpha in [(2, 3, 8, 0.25), (3, 1, 4, 0.7), (1, 3, 16, 0.0), (2, 3, 8, 1.0)]:
            old, new = torch.randn(n, c, r // 2, r // 2, generator=g), torch.randn(n, c, r, r, generator=g)
            out = fn(old.clone(), new.clone(), alpha)
            if isinstance(out, torch.Tensor) and tuple(out.shape) == (n, c, r // 2, r // 2):
                raise Mistake(f"the result is at the old resolution {r // 2}x{r // 2}: G's output must be at the "
                              f"new resolution {r}x{r}, so upsample `old` (do not downsample `new`).")
            out = _tensor_out(out, "fade_in", (n, c, r, r))
            ref = pggan.fade_in(old, new, alpha)
            if close(out, ref):
                continue
            up = pggan.upsample(old)
            bilinear = F.interpolate(old, scale_factor=2, mode="bilinear", align_corners=False)
            known = [
                (alpha * up + (1 - alpha) * new, "the blend runs the wrong way: alpha is the weight of the NEW "
                                                 "block, so alpha = 0 must give the upsampled old image and alpha "
                                                 "= 1 the new one: (1 - alpha) * old + alpha * new."),
                ((1 - alpha) * bilinear + alpha * new, "you upsample with bilinear interpolation: the authors "
                                                       "use nearest neighbour (each pixel becomes a 2x2 block), "
                                                       "which is what the old, smaller network really showed."),
                (alpha * bilinear + (1 - alpha) * new, "two mistakes: the blend runs the wrong way (alpha weighs "
                                                       "the new block) and the upsampling should be nearest "
                                                       "neighbour, not bilinear."),
                (up + alpha * new, "the weights do not sum to 1: the old image gets weight 1 - alpha."),
                (up + new, "this adds the two images; blend them: (1 - alpha) * old + alpha * new."),
                (0.5 * (up + new), "alpha is ignored: it is the new block's weight, rising from 0 to 1."),
            ]
            diagnose(out, known)
            raise Mistake(f"for alpha={alpha} the output differs from (1 - alpha) * upsample(old) + alpha * new "
                          f"(largest difference {float((out - ref).abs().max()):.3g}).")
        return "blends in the right direction with nearest-neighbour upsampling, for every alpha tried."

    return run_check("fade_in", body)


def _mbstd_variant(x: torch.Tensor, groups: str, unbiased: bool = False, centre: bool = True,
                   dim: str = "group") -> torch.Tensor:
    """The appended channel [N, 1, H, W] as typical wrong answers compute it: groups "strided" (right),
    "contiguous" or the whole "batch"; unbiased variance; no centring; the std over the channels."""
    n, c, h, w = x.shape
    gsz = min(4, n)
    if dim == "channels":  # the std over channels, per sample (the wrong axis)
        s = (x.var(dim=1, unbiased=unbiased, keepdim=True) + 1e-8).sqrt().mean(dim=(1, 2, 3))
        return s[:, None, None, None].expand(n, 1, h, w)
    if groups == "batch":
        y, axis = x[None], 1
    elif groups == "strided":
        y, axis = x.reshape(gsz, n // gsz, c, h, w), 0
    else:
        y, axis = x.reshape(n // gsz, gsz, c, h, w), 1
    m = y.mean(dim=axis, keepdim=True) if centre else 0
    var = ((y - m) ** 2).sum(dim=axis) / (y.shape[axis] - (1 if unbiased else 0))
    s = (var + 1e-8).sqrt().mean(dim=(-3, -2, -1))  # one per group
    if groups == "strided":
        s = s.repeat(gsz)
    elif groups == "contiguous":
        s = s.repeat_interleave(gsz)
    else:
        s = s.expand(n)
    return s[:, None, None, None].expand(n, 1, h, w)


def check_minibatch_stddev(fn: Callable) -> CheckResult:
    """fn(x [N, C, H, W], group_size=4) -> [N, C + 1, H, W]: x with its group's average std as a new channel."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        g = torch.Generator().manual_seed(1)
        for n, c, h in [(8, 3, 4), (4, 5, 2), (12, 2, 3)]:
            scale = torch.arange(1, n + 1).float()[:, None, None, None]  # samples differ in spread
            x = torch.randn(n, c, h, h, generator=g) * scale + torch.randn(1, c, h, h, generator=g)
            out = fn(x.clone(), 4)
            if isinstance(out, torch.Tensor) and tuple(out.shape) == (n, 1, h, h):
                raise Mistake("you return only the new feature: concatenate it to x along the channel axis, "
                              "torch.cat([x, stat], dim=1).")
            if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[1] == 2 * c:
                raise Mistake("you append one std map per channel: average the std over channels and pixels, "
                              "so there is one number per group, tiled into one new channel.")
            out = _tensor_out(out, "minibatch_stddev", (n, c + 1, h, h))
            if not close(out[:, :c], x):
                raise Mistake("the first C channels must be x itself, unchanged; the statistic is appended.")
            ref = layers.minibatch_stddev(x, 4)
            if close(out, ref):
                continue
            stat = out[:, c:]
            variant = partial(_mbstd_variant, x)

            known = [
                (variant("contiguous"), "your groups are consecutive samples (0-3, 4-7, ...): the authors group "
                                        "with a stride, x.reshape(G, -1, C, H, W), so sample i is in group i mod "
                                        "(N/G). Reshape with the group axis first."),
                (variant("strided", unbiased=True), "you use the unbiased variance (divides by G - 1, torch.std's "
                                                    "default): the authors take the plain mean of squared "
                                                    "deviations (divide by G), e.g. unbiased=False."),
                (variant("contiguous", unbiased=True), "two mistakes: groups must be strided (reshape(G, -1, ...)), "
                                                       "and the variance biased (divide by G, not G - 1)."),
                (variant("batch"), "you take the std over the whole batch: take it within groups of G = "
                                   "min(group_size, N) samples, so each group gets its own statistic."),
                (variant("batch", unbiased=True), "you take the (unbiased) std over the whole batch: use groups of "
                                                  "G samples and the biased variance."),
                (variant("strided", dim="channels"), "you take the std over the channel axis of each sample: it "
                                                     "must be over the samples of a group (how much the batch "
                                                     "varies), then averaged over channels and pixels."),
                (variant("strided", centre=False), "you forgot to subtract the group mean: the std is the root "
                                                   "of the mean squared *deviation* from the group's mean."),
            ]
            diagnose(stat, known)
            raise Mistake(f"for a batch of {n}, the appended channel differs from the group std (largest "
                          f"difference {float((stat - ref[:, c:]).abs().max()):.3g}).")
        same = torch.randn(1, 3, 2, 2).repeat(4, 1, 1, 1).requires_grad_(True)  # no variation at all
        out = fn(same, 4)
        out[:, -1].sum().backward()
        if not torch.isfinite(same.grad).all() or not close(out[:, -1], torch.full((4, 2, 2), 1e-4)):
            raise Mistake("for a group of identical samples the result (or its gradient) is not finite, or not "
                          "sqrt(0 + 1e-8) = 1e-4: add eps = 1e-8 to the variance inside the square root.")
        return "strided groups, biased variance, averaged over channels and pixels, with eps: as the authors."

    return run_check("minibatch_stddev", body)


def check_pixel_norm(fn: Callable) -> CheckResult:
    """fn(x [N, C, H, W]) -> x / sqrt(mean over channels of x^2 + 1e-8)."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        g = torch.Generator().manual_seed(2)
        for n, c, h in [(4, 8, 3), (2, 16, 5), (3, 4, 1)]:
            x = torch.randn(n, c, h, h, generator=g) * 3 + 0.5
            out = _tensor_out(fn(x.clone()), "pixel_norm", (n, c, h, h))
            ref = layers.pixel_norm(x)
            if close(out, ref):
                continue
            rms = lambda dim, x=x: x / (x.pow(2).mean(dim=dim, keepdim=True) + 1e-8).sqrt()
            known = [
                (rms((2, 3)), "you normalise over the spatial axes (H, W): pixel norm normalises each pixel's "
                              "feature vector, i.e. over the channel axis, dim=1."),
                (rms(0), "you normalise over the batch axis: pixel norm uses no batch statistics; take the mean "
                         "over the channel axis, dim=1."),
                (rms((1, 2, 3)), "you normalise over the whole sample (C, H, W): each pixel is normalised on its "
                                 "own, over dim=1 only."),
                (F.normalize(x, dim=1), "you divide by the L2 norm over channels, sqrt(sum x^2): use the mean, "
                                        "sqrt(mean x^2), so that the result has unit RMS, not unit length "
                                        "(they differ by sqrt(C))."),
                (x / (x.pow(2).mean(dim=1, keepdim=True) + 1e-8), "you divide by the mean square: take its "
                                                                  "square root, x / sqrt(mean(x^2) + eps)."),
                ((x - x.mean(1, keepdim=True)) / (x.var(1, unbiased=False, keepdim=True) + 1e-8).sqrt(),
                 "you subtract the mean (that is layer/instance normalisation): pixel norm only divides by the "
                 "root mean square over channels, x / sqrt(mean(x^2) + eps)."),
            ]
            diagnose(out, known)
            raise Mistake(f"the output differs from x / sqrt(mean_c(x^2) + 1e-8) (largest difference "
                          f"{float((out - ref).abs().max()):.3g}).")
        zero = fn(torch.zeros(2, 4, 2, 2))
        if not torch.isfinite(zero).all():
            raise Mistake("an all-zero pixel gives NaN (0 / 0): add eps = 1e-8 inside the square root.")
        return "normalises each pixel over its channels to unit RMS, with eps."

    return run_check("pixel_norm", body)


def check_fade_reals(fn: Callable) -> CheckResult:
    """fn(x [N, C, R, R], alpha) -> (1 - alpha) * upsample_nearest(downsample_avg(x)) + alpha * x: the real images
    as D sees them while resolution R fades in, blurred exactly as G's output is."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        g = torch.Generator().manual_seed(0)
        for n, c, r, alpha in [(2, 3, 8, 0.3), (1, 1, 16, 0.8), (2, 3, 4, 0.0), (3, 1, 8, 1.0)]:
            x = torch.randn(n, c, r, r, generator=g)
            out = fn(x.clone(), alpha)
            if isinstance(out, torch.Tensor) and tuple(out.shape) == (n, c, r // 2, r // 2):
                raise Mistake("the result is at half the resolution: D runs at the new resolution R while it fades "
                              "in, so upsample the downsampled image back to R x R before blending.")
            out = _tensor_out(out, "fade_reals", (n, c, r, r))
            ref = pggan.fade_reals(x, alpha)
            if close(out, ref):
                continue
            low = pggan.upsample(pggan.downsample(x))
            bilinear = F.interpolate(F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False),
                                     scale_factor=2, mode="bilinear", align_corners=False)
            strided = pggan.upsample(x[:, :, ::2, ::2])
            known = [
                (alpha * low + (1 - alpha) * x, "the blend runs the wrong way: alpha is the weight of the full-"
                                                "resolution image, so alpha = 0 must give the blurred one."),
                ((1 - alpha) * strided + alpha * x, "you downsample by dropping pixels: average each 2x2 block "
                                                    "(avg_pool2d), as the old, smaller network's input was."),
                ((1 - alpha) * bilinear + alpha * x, "you resample bilinearly: average 2x2 blocks down, then repeat "
                                                     "each pixel 2x2 up (nearest), exactly as G's fade-in does."),
                (low, "alpha is ignored: the blurred image is only the alpha = 0 end of the blend."),
            ]
            diagnose(out, known)
            raise Mistake(f"for alpha={alpha} the result differs from (1 - alpha) * upsample(downsample(x)) + alpha "
                          f"* x (largest difference {float((out - ref).abs().max()):.3g}).")
        return "reals blurred and blended exactly as G's output, for every alpha tried."

    return run_check("fade_reals", body)


def _stage_variant(images: int, final: int, start: int, stable: float, fade: float, fade_first: bool = False,
                   old_resolution: bool = False, uncapped: bool = False) -> tuple[int, float]:
    """(resolution, alpha) as typical wrong schedules compute it."""
    phase = (stable + fade) * 1000
    index, into = divmod(images, phase)
    fading = into < fade * 1000 if fade_first else into >= stable * 1000
    progress = (into if fade_first else into - stable * 1000) / (fade * 1000)
    level = int(index) + (1 if fading else 0)  # doublings reached (or being faded in)
    if not uncapped and level > math.log2(final // start):
        return final, 1.0
    resolution = start * 2 ** level
    if fading:
        return (resolution // 2, 1.0) if old_resolution else (resolution, progress)
    return resolution, 1.0


def _canonical_stage(resolution: int, alpha: float, start: int) -> tuple[int, float]:
    """A fade that has just begun, resolution R at alpha 0, computes what R/2 at alpha 1 does: count it as that."""
    return (resolution // 2, 1.0) if alpha == 0 and resolution > start else (resolution, alpha)


def check_growth_stage(fn: Callable) -> CheckResult:
    """fn(images, final_resolution, start_resolution, stable_kimg, fade_kimg) -> (resolution, alpha): each
    resolution is shown stable for stable_kimg thousand images, then the next one fades in over fade_kimg
    thousand images (alpha rising from 0 to 1); the final resolution then stays, at alpha 1."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        cases = [(images, 32, 4, 6.0, 4.0) for images in (0, 3000, 6000, 8000, 9999, 10000, 16500, 18000,
                                                          26000, 29000, 40000, 10**6)]
        cases += [(images, 16, 8, 0.0, 2.0) for images in (0, 500, 1999, 2000, 7000)]
        got = []
        for args in cases:
            out = fn(*args)
            if not (isinstance(out, tuple | list) and len(out) == 2):
                raise Mistake(f"growth_stage should return a pair (resolution, alpha), got {type(out).__name__}.")
            finite(out[0]), finite(out[1])
            got.append(_canonical_stage(int(out[0]), float(out[1]), args[2]))

        def agree(a, b) -> bool:
            return a[0] == b[0] and close(a[1], b[1], rtol=0, atol=1e-6)

        def same(stages) -> bool:
            return all(map(agree, got, stages))

        ref = [GrowthSchedule(final, start, stable, fade).at(images) for images, final, start, stable, fade in cases]
        if same(ref):
            return "the right resolution and alpha at every point of two schedules tried."
        known = [
            (dict(fade_first=True), "each phase fades in first and then trains stable: the authors train a "
                                    "resolution stable first (stable_kimg), then fade the next one in."),
            (dict(old_resolution=True), "while a resolution fades in, the networks already run at the NEW "
                                        "resolution, with alpha the weight of its new block; you return the old "
                                        "resolution at alpha 1."),
            (dict(uncapped=True), "the resolution keeps growing past final_resolution: once it is reached and faded "
                                  "in, training stays there at alpha 1."),
        ]
        diagnose(got, known, lambda _, kw: same([_canonical_stage(*_stage_variant(*args, **kw), args[2])
                                                 for args in cases]))
        k = next(k for k, (a, b) in enumerate(zip(got, ref)) if not agree(a, b))
        images, final, start, stable, fade = cases[k]
        raise Mistake(f"after {images} images (final {final}, start {start}, stable {stable:g} kimg, fade {fade:g} "
                      f"kimg) the stage is resolution {ref[k][0]} at alpha {ref[k][1]:.3f}, you returned resolution "
                      f"{got[k][0]} at alpha {got[k][1]:.3f}.")

    return run_check("growth_stage", body)



def check_equalized_conv2d(fn: Callable) -> CheckResult:
    """fn(x [N, C_in, H, W], weight [C_out, C_in, k, k], bias [C_out], gain=sqrt(2)) -> [N, C_out, H, W]: the
    convolution with the stored weight multiplied at run time by c = gain / sqrt(C_in * k^2), the bias added as it
    is, 'same' padding k // 2."""

    def body():
        g = torch.Generator().manual_seed(0)
        for cin, cout, k, gain in [(8, 12, 3, None), (6, 4, 1, 1.0), (4, 6, 3, 1.0), (5, 3, 3, None)]:
            w, b = torch.randn(cout, cin, k, k, generator=g), torch.randn(cout, generator=g)
            x = torch.randn(2, cin, 5, 5, generator=g)
            out = fn(x.clone(), w.clone(), b.clone()) if gain is None else fn(x.clone(), w.clone(), b.clone(), gain)
            gain = math.sqrt(2) if gain is None else gain
            if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-1] != 5:
                raise Mistake(f"the output is {out.shape[-1]}x{out.shape[-1]} for a 5x5 input: pad by k // 2 "
                              f"('same' padding), so the resolution stays.")
            out = _tensor_out(out, "equalized_conv2d", (2, cout, 5, 5))
            conv = lambda scale, bias_scale=1.0, x=x, w=w, b=b: F.conv2d(x, w * scale, b * bias_scale,
                                                                          padding=w.shape[-1] // 2)
            ref = conv(gain / math.sqrt(cin * k * k))
            if close(out, ref):
                continue
            c, he = gain / math.sqrt(cin * k * k), math.sqrt(2)
            known = [
                (conv(1.0), "the stored weight is used as it is: multiply it by c = gain / sqrt(fan_in) at every "
                            "forward pass. (Scaling only the initial weights is He initialisation, which Adam's "
                            "equal-sized steps then undo: the point of equalized lr is that the scale is applied at "
                            "run time.)"),
                (conv(gain / math.sqrt(cout * k * k)), "the constant uses the fan-out (C_out * k * k): equalized lr "
                                                       "divides by sqrt(fan_in), fan_in = C_in * k * k, the inputs "
                                                       "each output sums over."),
                (conv(gain / math.sqrt(cin)), "fan_in is C_in * k^2 (every output sums over a k x k window of "
                                              "every input channel), not C_in alone."),
                (conv(c, c), "the bias is scaled too: only the weight is multiplied by c; the bias is added as it "
                             "is (the authors' apply_bias)."),
                (conv(gain * gain / math.sqrt(cin * k * k)), "the gain is applied twice: c = gain / sqrt(fan_in)."),
            ]
            if gain != he:
                known.append((conv(he / math.sqrt(cin * k * k)), "the gain argument is ignored: c = gain / "
                                                                 "sqrt(fan_in), and toRGB uses gain 1."))
            else:
                known.append((conv(1 / math.sqrt(cin * k * k)), "the He gain sqrt(2) is missing: c = sqrt(2) / "
                                                                "sqrt(fan_in) by default (gain = sqrt(2))."))
            diagnose(out, known)
            raise Mistake(f"for C_in {cin}, C_out {cout}, kernel {k}, gain {gain:.3g} the output differs from "
                          f"conv2d(x, weight * gain / sqrt(C_in k^2), padding=k // 2) + bias (largest difference "
                          f"{float((out - ref).abs().max()):.3g}).")
        return "the stored weight scaled by gain / sqrt(fan_in) at run time, the bias unscaled, 'same' padding."

    return run_check("equalized_conv2d", body)


def check_fade_in_discriminator(fn: Callable) -> CheckResult:
    """fn(x [N, C, R, R], alpha, from_rgb_new, block, from_rgb_old) -> features [N, F, R/2, R/2]:
    (1 - alpha) * from_rgb_old(downsample(x)) + alpha * block(from_rgb_new(x))."""

    def body():
        for seed, (n, r, alpha) in enumerate([(2, 8, 0.3), (3, 16, 0.75), (2, 8, 0.0), (1, 4, 1.0)]):
            torch.manual_seed(seed)
            # modules (not lambdas), so that the grader can send them to a submission's process
            from_new = torch.nn.Sequential(layers.EqualizedConv2d(3, 6, 1), torch.nn.LeakyReLU(0.2))
            from_old = torch.nn.Sequential(layers.EqualizedConv2d(3, 5, 1), torch.nn.LeakyReLU(0.2))
            block = pggan.DiscriminatorBlock(6, 5)
            with torch.no_grad():
                for p in (from_new[0].bias, from_old[0].bias):
                    p.normal_()
            x = torch.randn(n, 3, r, r, generator=torch.Generator().manual_seed(seed))
            with torch.no_grad():
                out = fn(x.clone(), alpha, from_new, block, from_old)
                if isinstance(out, torch.Tensor) and tuple(out.shape) == (n, 6, r, r):
                    raise Mistake("the new path stops after fromRGB: it is block(from_rgb_new(x)), the new block "
                                  "bringing the features down to R/2.")
                out = _tensor_out(out, "fade_in_discriminator", (n, 5, r // 2, r // 2))
                ref = pggan.fade_in_discriminator(x, alpha, from_new, block, from_old)
                if close(out, ref):
                    continue
                new, old = block(from_new(x)), from_old(pggan.downsample(x))
                known = [
                    (alpha * old + (1 - alpha) * new, "the blend runs the wrong way: alpha is the weight of the NEW "
                                                      "path, block(from_rgb_new(x)); at alpha = 0 D must see only "
                                                      "the old path, from_rgb_old(downsample(x))."),
                    (block(from_new(pggan.fade_reals(x, alpha))), "you blend the images before fromRGB: D's fade-in "
                                                                  "blends features, after two paths, the new block "
                                                                  "on from_rgb_new(x) and from_rgb_old on the "
                                                                  "downsampled image."),
                    ((1 - alpha) * from_old(x[:, :, ::2, ::2]) + alpha * new, "you downsample by dropping pixels: "
                                                                              "average each 2x2 block (avg_pool2d), "
                                                                              "as G's upsampled image is blown up."),
                    ((1 - alpha) * pggan.downsample(from_old(x)) + alpha * new, "the old path averages after "
                                                                                "from_rgb_old: downsample the image "
                                                                                "first, then from_rgb_old (its "
                                                                                "activation makes the order matter)."),
                    (new, "alpha is ignored: you return the new path alone."),
                    (0.5 * (old + new), "alpha is ignored: it weighs the new path, from 0 to 1."),
                    (old + alpha * new, "the weights do not sum to 1: the old path gets 1 - alpha."),
                ]
                diagnose(out, known)
                raise Mistake(f"for alpha={alpha} the features differ from (1 - alpha) * from_rgb_old(downsample(x)) "
                              f"+ alpha * block(from_rgb_new(x)) (largest difference "
                              f"{float((out - ref).abs().max()):.3g}).")
        return "two paths, old and new, blended after fromRGB in the right direction, for every alpha tried."

    return run_check("fade_in_discriminator", body)


# exercise name -> check
CHECKS: dict[str, Callable[[Callable], CheckResult]] = {
    "fade_in": check_fade_in,
    "minibatch_stddev": check_minibatch_stddev,
    "pixel_norm": check_pixel_norm,
    "fade_reals": check_fade_reals,
    "growth_stage": check_growth_stage,
    "equalized_conv2d": check_equalized_conv2d,
    "fade_in_discriminator": check_fade_in_discriminator,
}

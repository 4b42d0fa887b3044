"""Checks of chapter 03 (StyleGAN), the synthesis network's input side: noise injection and the constant input."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ganlib import layers
from ganlib.models import stylegan as sg

from .core import CheckResult, Mistake, answers, close, run_check
from .stylegan import _diagnose, _tensor

# ----------------------------------------------------------------------------------------------------------
# Noise injection


def _noise_reference(x: torch.Tensor, strength: torch.Tensor, bias: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """ganlib's StyleGAN2 layer epilogue, conv output x [N, C, H, W] -> noise -> bias -> lrelu, with the noise
    maps `noise` [N, 1, H, W]: image by image through `layers.NoiseInjection` holding that image's map."""
    n, c, h, _ = x.shape
    inject = layers.NoiseInjection(h, channels=c)
    out = []
    with torch.no_grad():
        inject.strength.copy_(strength)
        for i in range(n):
            inject.noise_const.copy_(noise[i: i + 1])
            out.append(inject(x[i: i + 1], "const"))
    return sg.lrelu(torch.cat(out) + bias[None, :, None, None])


def _noise_mistakes(x: torch.Tensor, strength: torch.Tensor, bias: torch.Tensor,
                    seed: int) -> list[tuple[torch.Tensor, str]]:
    """The typical wrong noise layers, each drawing its noise as one torch.randn call from a generator at `seed`."""
    n, c, h, w = x.shape
    draw = lambda *size: torch.randn(*size, generator=torch.Generator().manual_seed(seed))
    noise = draw(n, 1, h, w)
    s, b = strength[None, :, None, None], bias[None, :, None, None]
    layer = lambda noise, s=s: sg.lrelu(x + s * noise + b)
    known = [
        (layer(draw(n, c, h, w)), "each channel gets its own noise map: draw one map per image, [N, 1, H, W], and "
                                  "let the channels share it (only the strengths differ per channel)."),
        (layer(draw(1, 1, h, w).expand(n, 1, h, w)), "every image gets the same noise map: draw one map per image, "
                                                     "[N, 1, H, W], so that each image's detail is its own."),
        (layer(draw(1, c, h, w).expand(n, c, h, w)), "one map per channel, shared by the images: the other way round, "
                                                     "one map per image ([N, 1, H, W]), shared by its channels."),
        (layer(noise, s=strength.mean()), "the strength is one number here: StyleGAN learns one strength per channel, "
                                          "strength[c] scales channel c's noise (view it as [1, C, 1, 1])."),
        (sg.lrelu(x + b) + s * noise, "the noise is added after the activation: ganlib (and StyleGAN2) add it to the "
                                      "convolution's output, before the bias and the leaky ReLU."),
        (sg.lrelu(x + b + noise), "the noise is not scaled by the learned strength: add strength[c] * n."),
        (F.leaky_relu(x + s * noise + b, 0.2), "the activation's gain sqrt(2) is missing: "
                                               "leaky_relu(., 0.2) * sqrt(2)."),
    ]
    if c == w:  # strength [C] times noise [N, 1, H, W] runs only then
        known.append((layer(noise, s=strength[None, None, None, :]),
                      "the strength scales the last axis (the width): strength [C] times noise [N, 1, H, W] "
                      "broadcasts along W; view it as [1, C, 1, 1] so that it scales the channels."))
    return known


def check_noise_layer(fn: Callable) -> CheckResult:
    """fn(x [N, C, H, W], strength [C], bias [C], generator) -> lrelu(x + strength_c n + bias_c) * sqrt(2), where n
    [N, 1, H, W] is one torch.randn draw from `generator`: a map per image, shared by its channels."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        # the first case has C == W, so that a strength broadcast along the width runs (and is named)
        for seed, shape in enumerate([(3, 4, 4, 4), (2, 3, 5, 5), (4, 2, 3, 3)]):  # square: ganlib stores square maps
            g = torch.Generator().manual_seed(seed)
            n, c, h, w = shape
            x = torch.randn(shape, generator=g)
            strength, bias = torch.randn(c, generator=g) + 0.5, 0.3 * torch.randn(c, generator=g)
            out = _tensor(fn(x.clone(), strength.clone(), bias.clone(), torch.Generator().manual_seed(100 + seed)),
                          "noise_layer", shape)
            noise = torch.randn(n, 1, h, w, generator=torch.Generator().manual_seed(100 + seed))
            ref = _noise_reference(x, strength, bias, noise)
            if close(out, ref):
                continue
            _diagnose(out, _noise_mistakes(x, strength, bias, 100 + seed),
                      f"for x of shape {list(shape)} your output differs from lrelu(x + strength * n + bias) * sqrt(2) "
                      f"by up to {(out - ref).abs().max().item():.3g}: draw n with one torch.randn call from the "
                      f"generator, shape [N, 1, H, W].")
        return "one noise map per image shared by its channels, a strength per channel, before bias and activation."

    return run_check("noise_layer", body)


# ----------------------------------------------------------------------------------------------------------
# The constant input


def check_constant_input(fn: Callable) -> CheckResult:
    """fn(const [C, 4, 4], w [N, w_dim]) -> [N, C, 4, 4]: the learned constant, one copy per image."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        for seed, (n, c, w_dim) in enumerate([(3, 5, 6), (1, 4, 2), (6, 2, 3)]):
            g = torch.Generator().manual_seed(seed)
            block = sg.ModulatedBlock(c, c, w_dim, 4, 3)  # ganlib's 4x4 block holds the constant
            with torch.no_grad():
                block.const.copy_(torch.randn(c, 4, 4, generator=g))
            const, w = block.const.detach().clone(), torch.randn(n, w_dim, generator=g)
            out = fn(const.clone(), w.clone())
            with torch.no_grad():
                ref = block.constant(w, "const")
            if isinstance(out, torch.Tensor) and tuple(out.shape) != (n, c, 4, 4):
                got = tuple(out.shape)
                if got == (1, c, 4, 4) and n > 1:
                    raise Mistake("one copy for the whole batch: the synthesis network needs one per image, "
                                  "[N, C, 4, 4], with N = w.shape[0] (expand or repeat along a new first axis).")
                if got == (w_dim, c, 4, 4):
                    raise Mistake("you made w.shape[1] (w_dim) copies: the batch size is w.shape[0].")
                if got == (c, 4, 4):
                    raise Mistake("add the batch axis: [N, C, 4, 4], one copy of const per image.")
                if got in ((1, n * c, 4, 4), (n * c, 4, 4)):
                    raise Mistake("the copies are stacked along the channels: put them on a new first axis, "
                                  "const[None] repeated N times, [N, C, 4, 4].")
            out = _tensor(out, "constant_input", (n, c, 4, 4))
            if close(out, ref):
                continue
            if n > 1 and not close(out, out[:1].expand(n, c, 4, 4)):
                raise Mistake("your images start from different tensors: the constant input does not depend on w "
                              "(nor on a random draw); every image gets the same learned const.")
            raise Mistake(f"each image's [C, 4, 4] input should be const itself; yours differs from it by up to "
                          f"{(out - ref).abs().max().item():.3g}.")
        return "one copy of the learned constant per image, for batches of 1 to 6."

    return run_check("constant_input", body)



# exercise name -> check
CHECKS: dict[str, Callable[[Callable], CheckResult]] = {
    "noise_layer": check_noise_layer,
    "constant_input": check_constant_input,
}

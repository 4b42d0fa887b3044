"""Checks of chapter 03 (StyleGAN): AdaIN, the mapping network, style mixing, truncation in W."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from ganlib import layers
from ganlib.models import stylegan as sg

from .core import CheckResult, Mistake, answers, close, diagnose, run_check


def _tensor(out, what: str, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise Mistake(f"{what} should return a torch tensor, got {type(out).__name__}.")
    if tuple(out.shape) != shape:
        raise Mistake(f"{what} should return a tensor of shape {list(shape)}, got {list(out.shape)}.")
    return out


def _diagnose(out: torch.Tensor, known: list[tuple[torch.Tensor, str]], fallback: str) -> None:
    diagnose(out, known)
    raise Mistake(fallback)


# ----------------------------------------------------------------------------------------------------------
# AdaIN


def _normalise(x: torch.Tensor, dims: tuple[int, ...], unbiased: bool = False) -> torch.Tensor:
    x = x - x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=unbiased)
    return x * torch.rsqrt(var + 1e-8)


def check_adain(fn: Callable) -> CheckResult:
    """fn(x [N, C, H, W], style [N, 2C]) -> (1 + y_s) * (x - mu) / sigma + y_b, style = (y_s, y_b), with mu and
    sigma of each sample's channel over H x W (StyleGAN's instance norm followed by its style modulation)."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        for seed, shape in [(0, (3, 4, 4, 4)), (1, (2, 5, 3, 6)), (2, (1, 2, 8, 8))]:
            g = torch.Generator().manual_seed(seed)
            n, c = shape[:2]
            x = 2 * torch.randn(shape, generator=g) + torch.randn(n, c, 1, 1, generator=g)
            style = 0.5 * torch.randn(n, 2 * c, generator=g)
            out = _tensor(fn(x.clone(), style.clone()), "adain", shape)
            ys, yb = style[:, :c, None, None], style[:, c:, None, None]
            ref = layers.adain(x, 1 + style[:, :c], style[:, c:])
            if close(out, ref):
                continue
            inst = _normalise(x, (2, 3))
            _diagnose(out, [
                ((1 + ys) * _normalise(x, (0, 2, 3)) + yb,
                 "your AdaIN normalises over the batch axis: it should normalise each sample's channel over its "
                 "H x W positions (mean and std over dims (2, 3)), so that one image's style never depends on "
                 "the other images in the batch."),
                ((1 + ys) * _normalise(x, (1, 2, 3)) + yb,
                 "you normalise over the channels too (a layer norm): AdaIN normalises each channel of each "
                 "sample on its own, over dims (2, 3)."),
                ((1 + ys) * _normalise(x, (2, 3), unbiased=True) + yb,
                 "you divide by the unbiased standard deviation (torch.std's default): instance norm uses the "
                 "biased one, sqrt(mean((x - mu)^2) + 1e-8), so that the output has exactly the style's std."),
                (ys * inst + yb,
                 "the scale is not centred at 1: with a freshly initialised affine layer (style close to 0) your "
                 "layer would output almost nothing. Multiply by (1 + y_s), as StyleGAN does."),
                ((1 + yb) * inst + ys,
                 "scale and bias are swapped: the first C entries of the style are the scales y_s, the last C "
                 "the biases y_b."),
                ((1 + ys) * x + yb,
                 "you apply the style without normalising first: subtract each channel's mean over H x W and "
                 "divide by its standard deviation before scaling."),
                ((1 + ys) * (x - x.mean(dim=(2, 3), keepdim=True)) + yb,
                 "you subtract the mean but do not divide by the standard deviation."),
                (inst, "you normalise, but do not apply the style: multiply by (1 + y_s) and add y_b."),
            ], f"for an input of shape {list(shape)} your output differs from (1 + y_s) * (x - mu) / sigma + y_b "
               f"by up to {(out - ref).abs().max().item():.3g}.")
        return "instance statistics, scale centred at 1, on three shapes."

    return run_check("adain", body)


# ----------------------------------------------------------------------------------------------------------
# Mapping network


def mapping_reference(z: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor], lr_mul: float,
                      norm: str = "second_moment", slope: float = 0.2, gain: float = math.sqrt(2),
                      weight_lr: bool = True, bias_lr: bool = True, fan_in: bool = True,
                      last_activation: bool = True) -> torch.Tensor:
    """The mapping network written out from raw parameters (and, with the flags, its typical wrong versions)."""
    if norm == "second_moment":
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
    elif norm == "unit_length":
        x = F.normalize(z, dim=1)
    elif norm == "batch":
        x = z * torch.rsqrt(z.square().mean(dim=0, keepdim=True) + 1e-8)
    else:
        x = z
    for i, (W, b) in enumerate(zip(weights, biases)):
        scale = (lr_mul if weight_lr else 1.0) / (math.sqrt(W.shape[1]) if fan_in else 1.0)
        x = x @ (W * scale).T + b * (lr_mul if bias_lr else 1.0)
        if last_activation or i < len(weights) - 1:
            x = F.leaky_relu(x, slope) * gain
    return x


def check_mapping_network(fn: Callable) -> CheckResult:
    """fn(z [N, z_dim], weights, biases, lr_mul) -> w [N, w_dim]: pixel norm of z, then per layer an equalized
    fully connected layer with learning-rate multiplier and leaky ReLU (0.2) times sqrt(2)."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        for seed, (n, z_dim, w_dim, depth, lr_mul) in enumerate([(5, 6, 4, 2, 0.01), (3, 8, 8, 3, 0.1),
                                                                 (1, 4, 5, 1, 1.0)]):
            torch.manual_seed(seed)
            mapping = sg.MappingNetwork(z_dim, w_dim, depth, lr_mul=lr_mul)
            with torch.no_grad():  # non-zero biases, so that bias mistakes show
                for fc in mapping.fcs:
                    fc.bias.normal_(0, 0.3 / lr_mul)
            weights = [fc.weight.detach().clone() for fc in mapping.fcs]
            biases = [fc.bias.detach().clone() for fc in mapping.fcs]
            g = torch.Generator().manual_seed(seed)
            z = 3 * torch.randn(n, z_dim, generator=g)
            with torch.no_grad():
                ref = mapping.eval()(z)
            out = _tensor(fn(z.clone(), [w.clone() for w in weights], [b.clone() for b in biases], lr_mul),
                          "mapping_network", (n, w_dim))
            if close(out, ref):
                continue
            variant = lambda z=z, weights=weights, biases=biases, lr_mul=lr_mul, **kw: mapping_reference(
                z, weights, biases, lr_mul, **kw)
            _diagnose(out, [
                (variant(norm="none"), "z goes in unnormalised: divide it by sqrt(mean(z^2) + 1e-8) over its "
                                       "features first (pixel norm), so that its scale carries no information."),
                (variant(norm="unit_length"), "you normalised z to unit length (F.normalize): StyleGAN normalises "
                                              "it to unit *mean square*, z / sqrt(mean(z^2) + 1e-8), which is "
                                              "sqrt(z_dim) times larger."),
                (variant(norm="batch"), "you normalised z over the batch axis: normalise each latent over its "
                                        "own features (dim 1)."),
                (variant(weight_lr=False), "the weights are used without the learning-rate multiplier: they are "
                                           "stored as N(0, 1/lr_mul^2), so multiply them by lr_mul / sqrt(fan_in)."),
                (variant(bias_lr=False), "the biases are used without the learning-rate multiplier: multiply "
                                         "each bias by lr_mul too."),
                (variant(weight_lr=False, bias_lr=False), "the learning-rate multiplier is missing: multiply the "
                                                          "weights by lr_mul / sqrt(fan_in) and the biases by lr_mul."),
                (variant(fan_in=False), "the equalized learning rate's 1/sqrt(fan_in) is missing: scale each "
                                        "weight by lr_mul / sqrt(number of inputs)."),
                (variant(gain=1.0), "the activation's gain sqrt(2) is missing: lrelu(x, 0.2) * sqrt(2)."),
                (variant(slope=0.01), "F.leaky_relu's default slope is 0.01; StyleGAN uses 0.2."),
                (variant(slope=0.0, gain=math.sqrt(2)), "that is a ReLU: use leaky ReLU with slope 0.2."),
                (variant(last_activation=False), "the last layer needs its activation too (every layer of the "
                                                 "mapping network is linear + leaky ReLU)."),
            ], f"for z of shape {[n, z_dim]} and {depth} layers your w differs from the reference by up to "
               f"{(out - ref).abs().max().item():.3g}.")
        return "normalised z, learning-rate multiplier, leaky ReLU with gain, on three networks."

    return run_check("mapping_network", body)


# ----------------------------------------------------------------------------------------------------------
# Style mixing


def check_mix_styles(fn: Callable) -> CheckResult:
    """fn(ws_a, ws_b [N, num_ws, w_dim], crossover) -> layers < crossover from ws_a, the rest from ws_b."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        for seed, (n, num_ws, w_dim, crossover) in enumerate([(2, 6, 3, 2), (3, 8, 4, 5), (4, 4, 4, 1),
                                                              (2, 6, 3, 6), (2, 6, 3, 0)]):
            g = torch.Generator().manual_seed(seed)
            a, b = torch.randn(n, num_ws, w_dim, generator=g), torch.randn(n, num_ws, w_dim, generator=g)
            a_in, b_in = a.clone(), b.clone()
            out = fn(a_in, b_in, crossover)
            if not (torch.equal(a_in, a) and torch.equal(b_in, b)):
                raise Mistake("your function changed its inputs in place: build a new tensor (torch.cat, or "
                              ".clone() first), because the same ws are reused for the unmixed images.")
            out = _tensor(out, "mix_styles", (n, num_ws, w_dim))
            ref = sg.mix_styles(a, b, crossover)
            if close(out, ref, rtol=0, atol=0):  # a copy of each row: exactly equal
                continue
            k = crossover
            known = [
                (sg.mix_styles(a, b, min(k + 1, num_ws)), f"off by one: with crossover {k}, layer {k} already "
                                                          f"reads ws_b (layers 0..{k - 1} read ws_a)."),
                (sg.mix_styles(a, b, max(k - 1, 0)), f"off by one: with crossover {k}, layers 0..{k - 1} read ws_a "
                                                     f"and layer {k} onwards ws_b."),
                (sg.mix_styles(b, a, k), "a and b are swapped: the coarse layers (before the crossover) read ws_a, "
                                         "the fine ones ws_b."),
                (torch.cat([a[:k], b[k:]], dim=0), "you mixed along the batch axis (dim 0): the layers are dim 1."),
                (torch.cat([a[:, :, :k], b[:, :, k:]], dim=2), "you mixed along the w features (dim 2): the layers "
                                                                "are dim 1."),
            ]
            diagnose(out, [(value, message) for value, message in known if not torch.equal(value, ref)],
                     lambda out, value: close(out, value, rtol=0, atol=0))
            raise Mistake(f"with num_ws={num_ws} and crossover={k}, rows 0..{k - 1} of each sample should be ws_a's "
                          f"and rows {k}..{num_ws - 1} ws_b's.")
        return "correct for crossovers 0 to num_ws, inputs left untouched."

    return run_check("mix_styles", body)


# ----------------------------------------------------------------------------------------------------------
# Truncation


def check_truncate_w(fn: Callable) -> CheckResult:
    """fn(G, z [N, z_dim], psi) -> ws [N, G.num_ws, w_dim] = w_avg + psi (mapping(z) - w_avg), broadcast."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        torch.manual_seed(0)
        G = sg.Generator(16, 3, z_dim=6, w_dim=5, mapping_layers=2, channel_base=32, channel_max=4).eval()
        with torch.no_grad():
            G.mapping.w_avg.copy_(torch.randn(5) + 2)  # as after training: far from zero
        w_avg = G.w_avg.clone()
        for seed, (n, psi) in enumerate([(4, 0.7), (3, 0.0), (2, 1.0), (5, 0.3), (3, 1.5)]):
            z = torch.randn(n, 6, generator=torch.Generator().manual_seed(seed))
            with torch.no_grad():
                out = fn(G, z.clone(), psi)
                w = G.mapping(z)
            if not torch.equal(G.w_avg, w_avg):
                raise Mistake("your function changed G.w_avg: read it, do not update it (call G.mapping in eval "
                              "mode, or with update_w_avg=False).")
            if isinstance(out, torch.Tensor) and tuple(out.shape) == (n, 5):
                raise Mistake(f"return ws, one w per layer: shape [N, G.num_ws, w_dim] = {[n, G.num_ws, 5]} (repeat "
                              f"w over the layers, e.g. with models.stylegan.broadcast).")
            out = _tensor(out, "truncate_w", (n, G.num_ws, 5))
            ref = sg.truncate(sg.broadcast(w, G.num_ws), w_avg, psi)
            if close(out, ref):
                continue
            ws = sg.broadcast(w, G.num_ws)
            with torch.no_grad():
                ws_of_scaled_z = sg.broadcast(G.mapping(psi * z), G.num_ws) if psi > 0 else None
            known = [
                (ws * psi, "you pulled w towards 0: StyleGAN's truncation pulls it towards the average w, "
                           "w_avg + psi * (w - w_avg)."),
                (ws.lerp(w_avg.expand_as(ws), psi), "psi works the wrong way round: psi = 1 must leave w as it is "
                                                    "and psi = 0 give w_avg: w_avg + psi * (w - w_avg)."),
                (w_avg + psi * ws, "w_avg + psi * w is not a blend: use w_avg + psi * (w - w_avg)."),
            ]
            if ws_of_scaled_z is not None:
                known.insert(0, (ws_of_scaled_z, "you truncated z, not w: scaling z does nothing here, because the "
                                                 "mapping network normalises z first. Truncate w towards G.w_avg."))
            _diagnose(out, known, f"for psi={psi} your ws differ from w_avg + psi * (w - w_avg) by up to "
                                  f"{(out - ref).abs().max().item():.3g}.")
        return "pulls w towards G.w_avg, psi from 0 to 1.5, for every layer."

    return run_check("truncate_w", body)


# ----------------------------------------------------------------------------------------------------------
# Modulated convolution with demodulation (StyleGAN2)


def _per_sample_conv(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Each sample x[n] [I, H, W] convolved with its own weights[n] [O, I, k, k], padding k // 2: [N, O, H, W]."""
    return torch.stack([F.conv2d(x[j: j + 1], weights[j], padding=weights.shape[-1] // 2)[0] for j in range(len(x))])


def check_modulated_conv2d(fn: Callable) -> CheckResult:
    """fn(x [N, I, H, W], weight [O, I, k, k], styles [N, I], demodulate=True) -> [N, O, H, W]: each sample
    convolved (padding k // 2) with its own weights s_i * w_oik, each output channel then divided by
    sqrt(sum_ik (s_i w_oik)^2 + 1e-8) when demodulating."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        g = torch.Generator().manual_seed(0)
        for n, i, o, k, demodulate in [(3, 4, 5, 3, True), (2, 3, 2, 1, True), (2, 4, 3, 3, False)]:
            x, weight = torch.randn(n, i, 6, 6, generator=g), torch.randn(o, i, k, k, generator=g)
            styles = torch.rand(n, i, generator=g) * 2 + 0.2
            out = _tensor(fn(x.clone(), weight.clone(), styles.clone(), demodulate), "modulated_conv2d",
                          (n, o, 6, 6))
            ref = layers.modulated_conv2d(x, weight, styles, demodulate)
            if close(out, ref):
                continue
            w = weight[None] * styles[:, None, :, None, None]  # [N, O, I, k, k]
            conv = partial(_per_sample_conv, x)
            modulated = conv(w)
            per_input = conv(w * torch.rsqrt(w.square().sum(dim=(1, 3, 4), keepdim=True) + 1e-8))
            whole = conv(w * torch.rsqrt(w.square().sum(dim=(1, 2, 3, 4), keepdim=True) + 1e-8))
            unit = weight * torch.rsqrt(weight.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)  # [O, I, k, k]
            shared = conv(w * torch.rsqrt(weight.square().sum(dim=(1, 2, 3)) + 1e-8)[None, :, None, None, None])
            unstyled = [F.conv2d(x, unit, padding=k // 2), F.conv2d(x, weight, padding=k // 2)]
            known = [
                (modulated, "the weights are modulated but not demodulated: divide each output channel's weights "
                            "by sqrt(sum over inputs and kernel of (s_i w_oik)^2 + 1e-8)."),
                (per_input, "the demodulation sums over the wrong axis: each OUTPUT channel o is normalised over "
                            "its inputs i and kernel positions k, not each input channel over the outputs."),
                (whole, "the norm is taken over the whole per-sample weight: demodulate each output channel "
                        "separately, so that each keeps unit variance."),
                (shared, "the demodulation uses the unstyled weight: compute the norm of the *modulated* weights "
                         "s_i * w_oik, so that the style's scale is taken out again."),
            ] + [(value, "the styles are not used: scale each input channel i of the weight by the sample's style "
                         "s_i.") for value in unstyled]
            if demodulate:
                diagnose(out, known)
            elif close(out, layers.modulated_conv2d(x, weight, styles, True)):
                raise Mistake("with demodulate=False the weights are only modulated, not divided by their norm.")
            raise Mistake(f"the result differs from the per-sample convolution with the modulated"
                          f"{' and demodulated' if demodulate else ''} weights (largest difference "
                          f"{float((out - ref).abs().max()):.3g}).")
        return "per-sample modulated weights, demodulated per output channel, with and without demodulation."

    return run_check("modulated_conv2d", body)


# ----------------------------------------------------------------------------------------------------------
# Style-mixing regularisation


def _mixing_variant(G, z: torch.Tensor, probability: float, seed: int, low: int = 1, inclusive: bool = False,
                    per_sample: bool = False, update_avg: bool = False, always: bool = False,
                    inverted: bool = False) -> torch.Tensor:
    """One training batch's ws as typical wrong answers compute it (the defaults give the right one)."""
    g = torch.Generator().manual_seed(seed)
    ws = sg.broadcast(G.mapping(z), G.num_ws)
    if probability <= 0:
        return ws
    u = float(torch.rand((), generator=g))
    if always or (u > probability if inverted else u < probability):
        high = G.num_ws + (1 if inclusive else 0)
        crossover = torch.randint(low, high, (z.shape[0],) if per_sample else (), generator=g)
        ws2 = sg.broadcast(G.mapping(torch.randn(z.shape, generator=g), update_w_avg=True if update_avg else False),
                           G.num_ws)
        layer = torch.arange(G.num_ws)[None, :]  # [1, num_ws]
        keep_a = layer < crossover.reshape(-1, 1)  # [N or 1, num_ws]
        ws = torch.where(keep_a[:, :, None], ws, ws2)
    return ws


def check_mixing_regularisation(fn: Callable) -> CheckResult:
    """fn(G, z [N, z_dim], probability, generator) -> ws [N, G.num_ws, w_dim]: one batch's styles with
    style-mixing regularisation: u ~ U(0, 1) from `generator`; if u < probability, a crossover drawn uniformly
    from [1, num_ws) (one for the batch) and a second latent z2 ~ N(0, I) of z's shape, both from `generator`,
    the layers >= crossover reading z2's w; the second mapping leaves G.w_avg alone."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        torch.manual_seed(0)
        G = sg.Generator(16, 3, z_dim=6, w_dim=5, mapping_layers=2, channel_base=32, channel_max=4).train()
        cases, outs = [], []
        for seed, (n, probability) in enumerate([(4, 0.9), (3, 0.9), (5, 1.0), (4, 0.0), (6, 0.9), (3, 0.5)]):
            z = torch.randn(n, 6, generator=torch.Generator().manual_seed(100 + seed))
            G_student, G_ref = copy.deepcopy(G), copy.deepcopy(G)
            with torch.no_grad():
                out = fn(G_student, z.clone(), probability, torch.Generator().manual_seed(seed))
                ref = sg.mixing_regularisation(G_ref, z, probability, torch.Generator().manual_seed(seed))
            out = _tensor(out, "mixing_regularisation", (n, G.num_ws, 5))
            if close(out, ref) and not torch.allclose(G_student.w_avg, G_ref.w_avg):
                raise Mistake("the second latent's mapping moved G.w_avg: map z2 with update_w_avg=False, so that "
                              "w_avg stays the running mean of the w that G is really given.")
            if probability == 0 and not close(out, ref):
                raise Mistake("with probability 0 no batch is mixed: every layer must read the first latent's w.")
            cases.append((z, probability, seed))
            outs.append((out, ref))
        if all(close(out, ref) for out, ref in outs):
            return "mixed with the right probability, one crossover in [1, num_ws) per batch, w_avg untouched by z2."
        known = [
            (dict(low=0), "the crossover is drawn from [0, num_ws): a crossover of 0 gives every layer the second "
                          "latent, which is no mixing at all; draw it from [1, num_ws)."),
            (dict(inclusive=True), "the crossover is drawn from [1, num_ws], so num_ws (no mixing) can come up: "
                                   "torch.randint(1, G.num_ws, ()) excludes the upper end."),
            (dict(per_sample=True), "each sample gets its own crossover: the authors draw one crossover for the whole "
                                    "batch (torch.randint(1, G.num_ws, (), generator=generator))."),
            (dict(inverted=True), "the batch is mixed when u > probability: mix when u < probability, so that "
                                  "probability 0.9 mixes 90% of the batches."),
            (dict(always=True), "every batch is mixed: draw u first, and mix only when u < probability."),
        ]
        with torch.no_grad():
            diagnose(outs, known, lambda outs, kw: all(
                close(out, _mixing_variant(copy.deepcopy(G), z, probability, seed, **kw))
                for (out, _), (z, probability, seed) in zip(outs, cases)))
        raise Mistake("the styles differ from the reference: draw, in this order, u = torch.rand((), generator="
                      "generator), then (if u < probability) the crossover torch.randint(1, G.num_ws, (), "
                      "generator=generator), then z2 = torch.randn(z.shape, generator=generator); layers < "
                      "crossover read w(z), the others w(z2).")

    return run_check("mixing_regularisation", body)


# exercise name -> check
CHECKS: dict[str, Callable[[Callable], CheckResult]] = {
    "adain": check_adain,
    "mapping_network": check_mapping_network,
    "mix_styles": check_mix_styles,
    "truncate_w": check_truncate_w,
    "modulated_conv2d": check_modulated_conv2d,
    "mixing_regularisation": check_mixing_regularisation,
}

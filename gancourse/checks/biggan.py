"""Checks of chapter 04 (BigGAN): the hinge loss, conditional batch norm, orthogonal regularisation, truncated
sampling and power iteration; self-attention's is in `attention`."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ganlib import losses, spectral

from .attention import check_self_attention
from .core import (
    CheckResult,
    Mistake,
    answers,
    as_scalar,
    backward,
    close,
    diagnose,
    finite,
    run_check,
    show,
)


def check_hinge_loss(fn: Callable) -> CheckResult:
    """fn(real_logits [N], fake_logits [N]) -> D's hinge loss E[relu(1 - l(x))] + E[relu(1 + l(G(z)))]."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        for seed, n in [(0, 8), (1, 33), (2, 1)]:
            g = torch.Generator().manual_seed(seed)
            real, fake = 1.5 * torch.randn(n, generator=g) + 1.5, 1.5 * torch.randn(n, generator=g) - 1.5
            out = as_scalar(fn(real.clone(), fake.clone()), "hinge_loss")
            ref = losses.d_loss_hinge(real, fake)
            if close(out, ref):
                continue
            known = [
                ((1 - real).mean() + (1 + fake).mean(), "the relu is missing: without it D is rewarded for pushing "
                                                        "logits ever further, which is the unbounded Wasserstein "
                                                        "loss; the hinge stops caring once l(x) >= 1 and "
                                                        "l(G(z)) <= -1."),
                (fake.mean() - real.mean(), "this is the Wasserstein critic loss: the hinge clips each term with "
                                            "relu(1 - l(x)) and relu(1 + l(G(z)))."),
                (F.relu(1 + real).mean() + F.relu(1 - fake).mean(), "real and fake are swapped: D should push real "
                                                                    "logits above +1 and fake logits below -1."),
                (losses.d_loss_hinge(fake, real), "real and fake are swapped."),
                (F.relu(-real).mean() + F.relu(fake).mean(), "the margin is missing: the hinge is relu(1 - l(x)) "
                                                             "and relu(1 + l(G(z))), not relu(-l(x)) and "
                                                             "relu(l(G(z)))."),
                (F.relu(1 - real).sum() + F.relu(1 + fake).sum(), "you summed over the batch: take the mean."),
                (F.relu((1 - real).mean()) + F.relu((1 + fake).mean()), "the relu must act on each sample's logit "
                                                                        "before the mean, not on the mean."),
                (-ref, "wrong sign: D minimises relu(1 - l(x)) + relu(1 + l(G(z))), a loss that is >= 0."),
                (-fake.mean(), "this is the generator's hinge loss -E[l(G(z))]; D's loss has a real and a fake term."),
                (F.relu(1 - real).mean(), "only the real term is there: add E[relu(1 + l(G(z)))]."),
                (F.relu(1 + fake).mean(), "only the fake term is there: add E[relu(1 - l(x))]."),
            ]
            diagnose(out, known)
            raise Mistake(f"for real_logits={show(real)} and fake_logits={show(fake)} the loss should be "
                          f"{ref.item():.4f}, yours is {out.item():.4f}.")
        real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-3.0, 0.0, 1.0])
        real.requires_grad_(True)
        fake.requires_grad_(True)
        backward(as_scalar(fn(real, fake), "hinge_loss"))
        expected_real, expected_fake = torch.tensor([0.0, -1.0, -1.0]) / 3, torch.tensor([0.0, 1.0, 1.0]) / 3
        if real.grad is None or fake.grad is None or not (close(real.grad, expected_real)
                                                          and close(fake.grad, expected_fake)):
            raise Mistake("the value is right but the gradient is not: use torch operations on the logits (no "
                          ".item() or .detach()).")
        return "correct, and its gradient vanishes for logits beyond the margins."

    return run_check("hinge_loss", body)


def _cbn_inputs(seed: int, n: int, channels: int = 4, cond_dim: int = 5, size: int = 3):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(n, channels, size, size, generator=g) + torch.randn(1, channels, 1, 1, generator=g)
    c = torch.randn(n, cond_dim, generator=g)
    gain, bias = nn.Linear(cond_dim, channels, bias=False), nn.Linear(cond_dim, channels, bias=False)
    with torch.no_grad():
        gain.weight.copy_(0.5 * torch.randn(channels, cond_dim, generator=g))
        bias.weight.copy_(0.5 * torch.randn(channels, cond_dim, generator=g))
    return x, c, gain, bias


def _cbn_reference(x, c, gain, bias, eps=1e-5):
    normalised = F.batch_norm(x, None, None, training=True, eps=eps)
    return normalised * (1 + gain(c))[:, :, None, None] + bias(c)[:, :, None, None]


def check_conditional_batch_norm(fn: Callable) -> CheckResult:
    """fn(x [N, C, H, W], c [N, cond_dim], gain: Linear, bias: Linear, eps=1e-5) -> conditional batch norm in
    training mode: BN(x) with batch statistics, times (1 + gain(c)), plus bias(c), per sample and channel."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        for seed, n in [(0, 6), (1, 2), (2, 9)]:
            x, c, gain, bias = _cbn_inputs(seed, n)
            out = fn(x.clone(), c.clone(), gain, bias)
            if not isinstance(out, torch.Tensor) or out.shape != x.shape:
                shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise Mistake(f"the output should have the input's shape {list(x.shape)}, got {shape}: the gain and "
                              f"bias are [N, C]; index them as [:, :, None, None] to broadcast over H and W.")
            with torch.no_grad():
                ref = _cbn_reference(x, c, gain, bias)
                if close(out, ref):
                    continue
                g, b = gain(c)[:, :, None, None], bias(c)[:, :, None, None]
                bn = F.batch_norm(x, None, None, training=True, eps=1e-5)
                unbiased = (x - x.mean((0, 2, 3), keepdim=True)) / (x.var((0, 2, 3), keepdim=True) + 1e-5).sqrt()
                per_sample = F.instance_norm(x, eps=1e-5)
                layer = (x - x.mean((1, 2, 3), keepdim=True)) / (x.var((1, 2, 3), unbiased=False,
                                                                       keepdim=True) + 1e-5).sqrt()
                batch_only = (x - x.mean(0, keepdim=True)) / (x.var(0, unbiased=False, keepdim=True) + 1e-5).sqrt()
                known = [
                    (bn * g + b, "the gain has no +1: BigGAN's gain is 1 + gain(c), so that a fresh layer (and a "
                                 "zero condition) starts as plain batch norm instead of scaling features by a "
                                 "random number near 0."),
                    (bn * (1 + b) + g, "gain and bias are swapped: multiply by 1 + gain(c) and add bias(c)."),
                    (bn + b, "the gain is missing: multiply by (1 + gain(c))."),
                    (bn * (1 + g), "the bias is missing: add bias(c)."),
                    (per_sample * (1 + g) + b, "you normalise each sample on its own (instance norm): batch norm "
                                               "uses the statistics of each channel over the batch *and* H x W."),
                    (layer * (1 + g) + b, "you normalise over the channels of each sample (layer norm): batch "
                                          "norm normalises each channel over the batch and H x W."),
                    (batch_only * (1 + g) + b, "you normalise over the batch only, separately per pixel: take "
                                               "the statistics over the batch and H x W, i.e. dims (0, 2, 3)."),
                    (unbiased * (1 + g) + b, "you used the unbiased variance (divided by n - 1): batch norm "
                                             "normalises with the biased one, var(unbiased=False)."),
                    ((x - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), unbiased=False, keepdim=True)
                     * (1 + g) + b, "eps is missing or outside the square root: divide by sqrt(var + eps)."),
                    (x * (1 + g) + b, "x is not normalised: subtract each channel's batch mean and divide by "
                                      "sqrt(var + eps) first."),
                ]
                diagnose(out, known)
            raise Mistake(f"for a batch of {n} the output differs from BN(x) * (1 + gain(c)) + bias(c) by up to "
                          f"{(out - ref).abs().max().item():.3g}.")
        x, c, gain, bias = _cbn_inputs(3, 4)
        x.requires_grad_(True)
        out = fn(x, c, gain, bias)
        if not out.requires_grad:
            raise Mistake("no gradient flows through your output: use torch operations only (no .detach()).")
        out.pow(2).sum().backward()
        if gain.weight.grad is None or bias.weight.grad is None:
            raise Mistake("gain and bias get no gradient: compute them as gain(c) and bias(c) inside the function.")
        return "correct: batch statistics per channel, gain centred at 1, and differentiable."

    return run_check("conditional_batch_norm", body)


def _ortho_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Embedding(5, 6), nn.Linear(6, 4), nn.BatchNorm2d(4), nn.Conv2d(4, 3, 3),
                         nn.Linear(3, 7))


def _penalty(weights: list[torch.Tensor], form: Callable) -> torch.Tensor:
    return sum(form(w.flatten(1)) for w in weights)


def check_orthogonal_regularization(fn: Callable) -> CheckResult:
    """fn(module, beta) -> beta * sum over weights W (ndim >= 2, no embeddings or norms; W as [out, -1]) of
    ||W W^T * (1 - I)||_F^2."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def eye_off(gram):
        return 1 - torch.eye(gram.shape[0])

    forms = {
        "ok": lambda w: ((w @ w.T) * eye_off(w @ w.T)).pow(2).sum(),
        "full": lambda w: (w @ w.T - torch.eye(w.shape[0])).pow(2).sum(),
        "gram": lambda w: (w @ w.T).pow(2).sum(),
        "wtw": lambda w: ((w.T @ w) * eye_off(w.T @ w)).pow(2).sum(),
        "wtw_full": lambda w: (w.T @ w - torch.eye(w.shape[1])).pow(2).sum(),
        "norm": lambda w: ((w @ w.T) * eye_off(w @ w.T)).norm(),
    }

    def matrices(m):
        return [m[1].weight, m[3].weight, m[4].weight]

    def with_embedding(m):
        return matrices(m) + [m[0].weight]

    def all_params(m):
        return [p if p.ndim >= 2 else p[:, None] for p in m.parameters()]

    def body():
        for seed, beta in [(0, 1e-4), (1, 0.5)]:
            net = _ortho_net(seed)
            out = as_scalar(fn(net, beta), "orthogonal_regularization")
            with torch.no_grad():
                ref = losses.orthogonal_regularization(net, beta)
                if close(out, ref):
                    continue
                def term(weights, form, net=net, beta=beta):
                    return beta * _penalty(weights(net), forms[form])

                known = [
                    (term(matrices, "full"), "this is the original orthogonal regularisation ||W W^T - I||^2, "
                                             "which also forces every filter to norm 1. BigGAN keeps only the "
                                             "off-diagonal terms: ||W W^T * (1 - I)||^2, multiply by "
                                             "(1 - torch.eye(out))."),
                    (term(matrices, "gram"), "the diagonal of W W^T is included: mask it out with (1 - I), so "
                                             "that only the filters' inner products with each other count."),
                    (term(matrices, "wtw"), "you used W^T W (in x in) instead of W W^T (out x out): reshape each "
                                            "weight to [out, -1] and take W @ W.T."),
                    (term(matrices, "wtw_full"), "this is ||W^T W - I||^2: BigGAN uses W W^T with W as [out, -1] "
                                                 "and only its off-diagonal terms."),
                    (term(matrices, "norm"), "you took the Frobenius norm, not its square: use .pow(2).sum()."),
                    (term(with_embedding, "ok"), "the embedding is included: BigGAN leaves the (shared) class "
                                                 "embedding out; skip nn.Embedding modules."),
                    (term(all_params, "ok"), "biases (and BN parameters) are included: only weights with at least "
                                             "two dimensions count."),
                    (ref / beta, "beta is missing: multiply the sum by beta."),
                    (ref / beta * 1e-4, "you used a fixed beta: multiply by the beta passed in."),
                    (ref / 2, "half the expected value: the penalty is beta * sum ||.||^2 (BigGAN's code adds half "
                              "its gradient, but the loss as written has no 1/2)."),
                ]
                diagnose(out, known)
            raise Mistake(f"for a small network (embedding, linear, batch norm, conv, linear) with beta={beta} the "
                          f"penalty should be {ref.item():.6g}, yours is {out.item():.6g}.")
        net = _ortho_net(2)
        backward(as_scalar(fn(net, 1.0), "orthogonal_regularization"))
        w = net[1].weight.detach()
        gram = w @ w.T
        expected = 4 * (gram * (1 - torch.eye(4))) @ w
        if net[1].weight.grad is None or not close(net[1].weight.grad, expected):
            raise Mistake("the value is right but the gradient is not 4 beta (W W^T * (1 - I)) W: compute the "
                          "penalty from the weights themselves with torch operations (no .detach()).")
        return "correct: only the off-diagonal Gram terms, weights only, with the right gradient."

    return run_check("orthogonal_regularization", body)


def _truncated_cdf(x: torch.Tensor, threshold: float) -> torch.Tensor:
    phi = lambda v: 0.5 * (1 + torch.erf(torch.as_tensor(v, dtype=torch.float64) / math.sqrt(2)))
    return (phi(x.double()) - phi(-threshold)) / (2 * phi(threshold) - 1)


def check_truncated_z(fn: Callable) -> CheckResult:
    """fn(n, dim, threshold, generator) -> [n, dim] samples of N(0, 1) truncated to [-threshold, threshold], each
    value outside resampled until it falls inside."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        for threshold in (0.5, 1.0, 2.0):
            z = fn(4000, 5, threshold, torch.Generator().manual_seed(0))
            if not isinstance(z, torch.Tensor) or z.shape != (4000, 5):
                shape = list(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
                raise Mistake(f"fn(4000, 5, ...) should return a tensor of shape [4000, 5], got {shape}.")
            finite(z)
            z = z.detach().double()
            top = z.abs().max().item()
            if top > threshold + 1e-6:
                if abs(z.std().item() - threshold) < 0.1 * threshold:
                    raise Mistake(f"values go beyond the threshold ({top:.2f} > {threshold}): scaling z by the "
                                  f"threshold (psi * z) is not truncation; resample every value with |z| > "
                                  f"threshold.")
                raise Mistake(f"values go beyond the threshold ({top:.2f} > {threshold}): resample every value "
                              f"with |z| > threshold until none is left.")
            at_edge = (z.abs() > threshold - 1e-6).double().mean().item()
            if at_edge > 0.01:
                raise Mistake(f"{100 * at_edge:.0f} % of the values sit exactly at +-{threshold}: this is clipping "
                              f"(torch.clamp), which piles every outlier up at the threshold. Redraw the values "
                              f"outside instead, so the density stays the normal one inside the interval.")
            s = z.flatten().sort().values
            ecdf = torch.arange(1, len(s) + 1, dtype=torch.float64) / len(s)
            ks = (_truncated_cdf(s, threshold) - ecdf).abs().max().item()
            if ks > 0.03:
                uniform = ((s + threshold) / (2 * threshold) - ecdf).abs().max().item()
                if uniform < 0.03:
                    raise Mistake("the values are uniform on [-threshold, threshold]: draw them from the normal "
                                  "distribution and resample those outside.")
                scaled = _truncated_cdf(s / threshold * 2, 2.0)
                if (scaled - ecdf).abs().max().item() < 0.03 and threshold != 2.0:
                    raise Mistake("you scaled a 2-sigma truncated normal by the threshold (the TF-Hub port's "
                                  "variant): the paper's trick samples N(0, 1) restricted to [-threshold, threshold].")
                raise Mistake(f"the values are not distributed as N(0, 1) restricted to [-{threshold}, {threshold}] "
                              f"(largest gap between the CDFs {ks:.3f}): draw from torch.randn and resample the "
                              f"values outside.")
        a = fn(50, 3, 1.0, torch.Generator().manual_seed(7))
        b = fn(50, 3, 1.0, torch.Generator().manual_seed(7))
        if not torch.equal(a, b):
            raise Mistake("two calls with generators seeded alike give different values: pass `generator` to every "
                          "torch.randn call.")
        c = fn(50, 3, 1.0, torch.Generator().manual_seed(8))
        if torch.equal(a, c):
            raise Mistake("different generators give the same values: draw from the generator passed in.")
        return "correct: inside the threshold, not piled up at it, with the truncated normal's distribution."

    return run_check("truncated_z", body)


def check_power_iteration(fn: Callable) -> CheckResult:
    """fn(weight [out, in], u [out]) -> (sigma, u_new): one power-iteration step of spectral normalisation,
    v = W^T u / ||W^T u||, u_new = W v / ||W v||, sigma = u_new^T W v."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        g = torch.Generator().manual_seed(0)
        for out_dim, in_dim in [(5, 7), (8, 3)]:
            w, u = torch.randn(out_dim, in_dim, generator=g), F.normalize(torch.randn(out_dim, generator=g), dim=0)
            out = fn(w.clone(), u.clone())
            if not (isinstance(out, tuple | list) and len(out) == 2):
                raise Mistake(f"power_iteration should return a pair (sigma, u_new), got {type(out).__name__}.")
            sigma, u_new = out
            sigma = as_scalar(torch.as_tensor(sigma), "power_iteration's sigma")
            if not isinstance(u_new, torch.Tensor) or tuple(u_new.shape) != (out_dim,):
                raise Mistake(f"u_new should be a vector of W's output size [{out_dim}], got "
                              f"{getattr(u_new, 'shape', type(u_new).__name__)}.")
            ref_sigma, ref_u = spectral.power_iteration(w, u)
            if not close(u_new, ref_u):
                if close(F.normalize(u_new, dim=0), ref_u):
                    raise Mistake("u_new points the right way but is not a unit vector: divide W v by its norm.")
                raise Mistake("u_new should be W v / ||W v|| with v = W^T u / ||W^T u||: first v from u, then the "
                              "new u from v.")
            if close(sigma, ref_sigma):
                continue
            v = F.normalize(w.T @ u, dim=0)
            known = [
                (u @ w @ v, "sigma uses the old u: compute it with the new one, u_new^T W v."),
                (torch.linalg.matrix_norm(w, 2), "that is the exact sigma from an SVD: spectral normalisation "
                                                 "estimates it with one cheap power iteration per training step "
                                                 "instead, reusing u from the step before."),
                (w.norm(), "that is the Frobenius norm of W (the root of the sum of all squared entries), which is "
                           "larger than the largest singular value: compute u_new^T W v."),
                (w.abs().max(), "that is W's largest entry, what weight clipping bounds: the largest singular value "
                                "is estimated by u_new^T W v."),
            ]
            diagnose(sigma, known)
            raise Mistake(f"sigma is {float(sigma):.4f}, it should be u_new^T W v = {float(ref_sigma):.4f}.")
        w = torch.randn(6, 4, generator=g)
        u = F.normalize(torch.randn(6, generator=g), dim=0)
        for _ in range(200):
            sigma, u = fn(w, u)
        true = float(torch.linalg.matrix_norm(w, 2))
        if not close(torch.as_tensor(sigma).reshape(()), true, rtol=1e-3, atol=0):
            raise Mistake("repeated steps should converge to W's largest singular value, and yours do not.")
        return "one step is right, and repeated steps converge to the largest singular value."

    return run_check("power_iteration", body)


CHECKS = {
    "hinge_loss": check_hinge_loss,
    "conditional_batch_norm": check_conditional_batch_norm,
    "orthogonal_regularization": check_orthogonal_regularization,
    "truncated_z": check_truncated_z,
    "power_iteration": check_power_iteration,
    "self_attention": check_self_attention,
}

"""Checks of chapter 01b (WGAN-GP and conditional GANs): the gradient penalty, the critic's loss, the
conditional generator's input and the projection discriminator's output."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ganlib import layers, losses

from .core import CheckResult, Mistake, answers, as_scalar, close, diagnose, run_check


class _Critic(nn.Module):
    """A small smooth critic for the checks: x [N, ...] -> [N]. Smooth (tanh) so that gradient norms differ
    from point to point and every mistake changes the penalty."""

    def __init__(self, in_features: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = nn.Parameter(torch.randn(in_features, 16, generator=g) / in_features**0.5)
        self.w2 = nn.Parameter(torch.randn(16, generator=g) * 0.8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x.flatten(1) @ self.w1) @ self.w2


def _interpolate(real, fake, u):
    return torch.lerp(real, fake, u).requires_grad_(True)


def _penalty_variant(critic, real, fake, seed: int, *, u_shape: str = "sample", at: str = "between",
                     norm: str = "sample", form: str = "two-sided", reduce: str = "sum") -> torch.Tensor:
    """The gradient penalty as typical wrong answers compute it (the defaults give the right one)."""
    g = torch.Generator().manual_seed(seed)
    n = real.shape[0]
    shape = {"sample": (n, *[1] * (real.ndim - 1)), "batch": (1,) * real.ndim, "element": tuple(real.shape)}[u_shape]
    u = torch.rand(*shape, generator=g)
    x = {"between": lambda: _interpolate(real, fake, u), "real": lambda: real.clone().requires_grad_(True),
         "fake": lambda: fake.clone().requires_grad_(True)}[at]()
    out = critic(x)
    (grad,) = torch.autograd.grad(out.sum() if reduce == "sum" else out.mean(), x, create_graph=True)
    length = grad.flatten(1).norm(dim=1) if norm == "sample" else grad.norm().expand(n)
    return {"two-sided": (length - 1) ** 2, "squared": length**2, "abs": (length - 1).abs(),
            "one-sided": F.relu(length - 1) ** 2}[form].mean()


def _setups():
    """(critic, real, fake, seed) on points [N, 2] and on images [N, 1, 4, 4]."""
    for seed, shape in [(0, (16, 2)), (1, (8, 1, 4, 4))]:
        g = torch.Generator().manual_seed(100 + seed)
        real, fake = torch.randn(*shape, generator=g) + 1.5, torch.randn(*shape, generator=g)
        yield _Critic(real[0].numel(), seed), real, fake, seed


def _critic_grads(critic: nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    critic.zero_grad()
    if not loss.requires_grad:
        return [torch.zeros_like(p) for p in critic.parameters()]
    loss.backward()
    return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in critic.parameters()]


def check_gradient_penalty(fn: Callable) -> CheckResult:
    """fn(critic, real, fake, generator) -> E[(||grad_x critic(x_hat)||_2 - 1)^2] at x_hat = real + u (fake - real),
    u = torch.rand(N, 1, ..., generator=generator) one per sample; differentiable w.r.t. the critic's weights."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        for critic, real, fake, seed in _setups():
            out = as_scalar(fn(critic, real.clone(), fake.clone(), torch.Generator().manual_seed(seed)),
                            "gradient_penalty")
            ref = _penalty_variant(critic, real, fake, seed)
            if not close(out, ref):
                variant = partial(_penalty_variant, critic, real, fake, seed)
                known = [
                    (dict(form="squared"), "you penalise ||grad||^2, which pulls the gradient towards 0 (that is R1): "
                                           "WGAN-GP penalises (||grad|| - 1)^2, pulling its norm towards 1."),
                    (dict(norm="batch"), "the norm is taken over the whole batch at once: take each sample's own "
                                         "gradient norm, grad.flatten(1).norm(dim=1), then average the penalties."),
                    (dict(reduce="mean"), "the gradient is of critic(x_hat).mean(), which divides every sample's "
                                          "gradient by N: differentiate critic(x_hat).sum() so each sample keeps its "
                                          "own gradient."),
                    (dict(at="real"), "the penalty is evaluated at the real samples: WGAN-GP evaluates it at random "
                                      "points between real and fake, x_hat = real + u (fake - real)."),
                    (dict(at="fake"), "the penalty is evaluated at the fake samples: WGAN-GP evaluates it at random "
                                      "points between real and fake, x_hat = real + u (fake - real)."),
                    (dict(u_shape="batch"), "one u is shared by the whole batch: draw one per sample, "
                                            "torch.rand(N, 1, ..., generator=generator)."),
                    (dict(u_shape="element"), "u is drawn for every coordinate: each sample needs one u, shared "
                                              "by all its coordinates, so that x_hat lies on the line from real "
                                              "to fake: torch.rand(N, 1, ..., generator=generator)."),
                    (dict(form="abs"), "you penalise |(||grad|| - 1)|: WGAN-GP squares the difference."),
                    (dict(form="one-sided"), "you penalise only norms above 1 (the one-sided penalty): WGAN-GP's "
                                             "penalty is two-sided, (||grad|| - 1)^2."),
                ]
                diagnose(out, [(variant(**kw), message) for kw, message in known], close)
                raise Mistake(f"the penalty is {float(out):.4f}, it should be {float(ref):.4f}: interpolate with "
                              f"u = torch.rand(N, 1, ..., generator=generator), differentiate critic(x_hat).sum() "
                              f"with respect to x_hat, and average (||grad|| - 1)^2 over the samples.")
            if not out.requires_grad:
                raise Mistake("the penalty is right but carries no gradient to the critic's weights: pass "
                              "create_graph=True to torch.autograd.grad, so that the critic can be trained on it.")
            got, want = _critic_grads(critic, out), _critic_grads(critic, ref)
            if not all(close(a, b) for a, b in zip(got, want)):
                raise Mistake("the penalty's value is right but its gradient with respect to the critic's weights "
                              "is not: keep the graph (create_graph=True) and do not detach the gradient.")
        return "the right penalty, per-sample interpolates and norms, differentiable w.r.t. the critic."

    return run_check("gradient_penalty", body)


def check_critic_loss(fn: Callable) -> CheckResult:
    """fn(critic, real, fake, generator, gp_weight=10.0) -> E[critic(fake)] - E[critic(real)] + gp_weight * GP,
    with GP the gradient penalty (drawing its u from `generator`)."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        for critic, real, fake, seed in _setups():
            for weight in (10.0, 2.5):
                out = as_scalar(fn(critic, real.clone(), fake.clone(), torch.Generator().manual_seed(seed), weight),
                                "critic_loss")
                gp = _penalty_variant(critic, real, fake, seed)
                w_loss = losses.d_loss_wasserstein(critic(real), critic(fake))
                ref = w_loss + weight * gp
                if close(out, ref):
                    continue
                flipped = critic(real).mean() - critic(fake).mean()
                logistic = losses.d_loss_logistic(critic(real), critic(fake))
                known = [
                    (flipped + weight * gp, "the Wasserstein term has the wrong sign: the critic *minimises* "
                                            "E[critic(fake)] - E[critic(real)], i.e. it scores real samples high."),
                    (w_loss, "the gradient penalty is missing: add gp_weight * gradient_penalty(...)."),
                    (w_loss + gp, "the penalty is not weighted: multiply it by gp_weight (WGAN-GP's lambda, 10)."),
                    (w_loss + 10.0 * gp, "gp_weight is ignored: use the argument, not a fixed 10."),
                    (logistic + weight * gp, "you used the logistic (sigmoid) loss: a Wasserstein critic's output "
                                             "is a score, not a probability: E[critic(fake)] - E[critic(real)]."),
                ]
                diagnose(out, known)
                raise Mistake(f"the loss is {float(out):.4f}, it should be {float(ref):.4f} = E[critic(fake)] - "
                              f"E[critic(real)] + gp_weight * penalty.")
        return "the Wasserstein critic loss with the weighted gradient penalty."

    return run_check("critic_loss", body)


def check_conditional_input(fn: Callable) -> CheckResult:
    """fn(z [N, D], labels [N], num_classes) -> [N, D + num_classes]: z with the one-hot label appended."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        g = torch.Generator().manual_seed(0)
        for n, d, k in [(6, 4, 5), (3, 2, 10)]:
            z = torch.randn(n, d, generator=g)
            labels = torch.randint(k - 1, (n,), generator=g)  # the largest class is absent from this batch
            out = fn(z.clone(), labels.clone(), k)
            if not isinstance(out, torch.Tensor):
                raise Mistake(f"conditional_input should return a torch tensor, got {type(out).__name__}.")
            if tuple(out.shape) == (n, d + 1):
                raise Mistake("the label is appended as one number: append it one-hot (F.one_hot(labels, "
                              "num_classes)). As a number, class 7 would look 'more' than class 3 to G.")
            if out.ndim == 2 and out.shape[0] == n and out.shape[1] == d + int(labels.max()) + 1:
                raise Mistake("pass num_classes to F.one_hot: without it the one-hot has as many columns as the "
                              "largest label in this batch, so its width changes from batch to batch.")
            if tuple(out.shape) != (n, d + k):
                raise Mistake(f"for z [{n}, {d}] and {k} classes the result should be [{n}, {d + k}] (concatenate "
                              f"along dim=1), got {list(out.shape)}.")
            if not out.is_floating_point():
                raise Mistake("the result is an integer tensor: convert the one-hot to z's dtype (.to(z.dtype)) "
                              "before concatenating.")
            ref = layers.one_hot_concat(z, labels, k)
            if close(out, ref):
                continue
            one_hot = F.one_hot(labels, k).float()
            if close(out, torch.cat([one_hot, z], dim=1)):
                raise Mistake("the one-hot comes first: append it after z, as the docstring says (the library's "
                              "generators expect [z, one_hot]).")
            raise Mistake("the result differs from torch.cat([z, F.one_hot(labels, num_classes)], dim=1).")
        return "z followed by the one-hot label, for every batch tried."

    return run_check("conditional_input", body)


def check_projection_logits(fn: Callable) -> CheckResult:
    """fn(h [N, F], labels [N], embed: nn.Embedding(K, F), linear: nn.Linear(F, 1)) -> logits [N] =
    linear(h) + <embed(labels), h>."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        for seed, (n, f, k) in enumerate([(5, 6, 4), (8, 3, 10)]):
            torch.manual_seed(seed)
            embed, linear = nn.Embedding(k, f), nn.Linear(f, 1)
            g = torch.Generator().manual_seed(seed)
            h, labels = torch.randn(n, f, generator=g), torch.randint(k, (n,), generator=g)
            out = fn(h.clone(), labels.clone(), embed, linear)
            if not isinstance(out, torch.Tensor):
                raise Mistake(f"projection_logits should return a torch tensor, got {type(out).__name__}.")
            if tuple(out.shape) == (n, n):
                raise Mistake("the result is an N x N matrix: the inner product pairs each sample's embedding with "
                              "its own features only, (embed(labels) * h).sum(dim=1), not embed(labels) @ h.T.")
            if tuple(out.shape) == (n, 1):
                raise Mistake("the result is [N, 1]: return one logit per sample, [N] (squeeze linear(h)).")
            if tuple(out.shape) != (n,):
                raise Mistake(f"the result should be one logit per sample, shape [{n}], got {list(out.shape)}.")
            with torch.no_grad():
                uncond, proj = linear(h).squeeze(1), (embed(labels) * h).sum(dim=1)
                ref = uncond + proj
            if close(out, ref):
                continue
            known = [
                (proj, "the unconditional score is missing: add linear(h), which judges realism whatever the "
                       "class; the projection term only adds how well h fits the label."),
                (uncond, "the label is not used: add the projection term <embed(labels), h>."),
                (uncond + embed(labels).sum(dim=1) * h.sum(dim=1), "the embedding and the features are summed "
                                                                   "separately, then multiplied: take the inner "
                                                                   "product, (embed(labels) * h).sum(dim=1)."),
                (uncond - proj, "the projection term has the wrong sign: it is added."),
            ]
            diagnose(out, [(value.detach(), message) for value, message in known])
            raise Mistake("the logits differ from linear(h).squeeze(1) + (embed(labels) * h).sum(dim=1).")
        embed, linear = nn.Embedding(4, 3), nn.Linear(3, 1)
        labels = torch.tensor([2, 2])
        fn(torch.randn(2, 3), labels, embed, linear).sum().backward()
        rows = embed.weight.grad.abs().sum(dim=1) if embed.weight.grad is not None else torch.zeros(4)
        if rows[2] == 0:
            raise Mistake("no gradient reaches the class embedding: compute the logits from embed(labels) with "
                          "torch operations (no .detach() or .item()).")
        return "linear(h) plus each sample's inner product with its class embedding, with gradients to both."

    return run_check("projection_logits", body)


# exercise name -> check
CHECKS: dict[str, Callable[[Callable], CheckResult]] = {
    "gradient_penalty": check_gradient_penalty,
    "critic_loss": check_critic_loss,
    "conditional_input": check_conditional_input,
    "projection_logits": check_projection_logits,
}

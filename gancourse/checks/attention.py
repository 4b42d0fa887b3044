"""Chapter 04's self-attention check (SAGAN's block as BigGAN uses it: pooled keys and values, softmax over the keys,
a residual scaled by gamma, which starts at 0)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ganlib import layers

from .core import CheckResult, Mistake, close, diagnose, run_check


def _attention_variants(ref: nn.Module, x: torch.Tensor) -> list[tuple[torch.Tensor, str]]:
    """Typical wrong self-attention blocks, computed with the weights of `ref` (a layers.SelfAttention)."""
    n, c, h, w = x.shape
    theta = ref.theta(x).flatten(2)  # [N, C/8, HW]
    phi_full, g_full = ref.phi(x).flatten(2), ref.g(x).flatten(2)  # [N, *, HW]
    phi, g = F.max_pool2d(ref.phi(x), 2).flatten(2), F.max_pool2d(ref.g(x), 2).flatten(2)  # [N, *, HW/4]
    phi_avg, g_avg = F.avg_pool2d(ref.phi(x), 2).flatten(2), F.avg_pool2d(ref.g(x), 2).flatten(2)
    logits = theta.transpose(1, 2) @ phi  # [N, HW, HW/4]
    full = theta.transpose(1, 2) @ phi_full  # [N, HW, HW]

    def attended(values, beta):  # o(values beta^T) as [N, C, H, W]
        return ref.o((values @ beta.transpose(1, 2)).reshape(n, c // 2, h, w))

    good = attended(g, torch.softmax(logits, dim=-1))
    return [
        (x + ref.gamma * attended(g, torch.softmax(logits, dim=1)),
         "your softmax runs over the queries (dim 1 of theta^T phi [N, HW, HW/4]), or you transposed the attention "
         "map: take it over the keys, the last axis, so that each position's attention weights sum to 1."),
        (ref.gamma * good, "the residual is missing: the block returns x + gamma * o(g beta^T), so that it is the "
                           "identity while gamma is 0."),
        (x + good, "gamma is not used: multiply the attention path by gamma, x + gamma * o(g beta^T)."),
        (x + ref.gamma * ref.o((g_full @ torch.softmax(full, dim=-1)).reshape(n, c // 2, h, w)),
         "the attention map is transposed (g @ beta instead of g @ beta^T), and keys and values are not pooled: "
         "max-pool phi(x) and g(x) 2x2, then take g @ beta.transpose(1, 2)."),
        (x + ref.gamma * attended(g_full, torch.softmax(full, dim=-1)),
         "keys and values are not max-pooled: BigGAN pools phi(x) and g(x) 2x2 (F.max_pool2d(..., 2)), so each "
         "position attends over a quarter of the positions."),
        (x + ref.gamma * attended(g_avg, torch.softmax(theta.transpose(1, 2) @ phi_avg, dim=-1)),
         "you average-pooled keys and values: BigGAN max-pools them (F.max_pool2d)."),
        (x + ref.gamma * attended(g, torch.softmax(logits / math.sqrt(c // 8), dim=-1)),
         "you scaled theta^T phi by 1/sqrt(C/8) (a Transformer's habit): SAGAN's softmax takes theta^T phi as it is."),
    ]


def check_self_attention(fn: Callable) -> CheckResult:
    """fn(x [N, C, H, W], theta, phi, g, o, gamma) -> x + gamma * o(g beta^T) [N, C, H, W]: theta, phi (C -> C/8),
    g (C -> C/2) and o (C/2 -> C) are 1x1 convolutions, gamma a scalar tensor; keys phi(x) and values g(x) are 2x2
    max-pooled and beta = softmax over the keys of theta^T phi [N, HW, HW/4]."""

    def run(ref, x):
        try:
            return fn(x.clone(), ref.theta, ref.phi, ref.g, ref.o, ref.gamma.detach().clone())
        except RuntimeError as e:
            text = str(e).strip().splitlines()[0] if str(e).strip() else ""
            if "multiplied" in text or "size" in text or "match" in text:
                raise Mistake(f"your block fails with shapes that do not fit ({text[:120]}): beta is [N, HW, HW/4] "
                              f"(one row per query position, one column per pooled key) and the pooled values g are "
                              f"[N, C/2, HW/4], so the attended values are g @ beta.transpose(1, 2), "
                              f"[N, C/2, HW].") from None
            raise

    def block(c, gamma, seed):
        torch.manual_seed(seed)
        ref = layers.SelfAttention(c)
        with torch.no_grad():
            ref.gamma.fill_(gamma)
        return ref

    def body():
        g = torch.Generator().manual_seed(0)
        ref = block(16, 0.0, 0)
        x = torch.randn(2, 16, 8, 8, generator=g)
        with torch.no_grad():
            out = run(ref, x)
            if not isinstance(out, torch.Tensor) or out.shape != x.shape:
                shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise Mistake(f"the output should have the input's shape {list(x.shape)}, got {shape}.")
            if not close(out, x):
                if close(out, torch.zeros_like(x)):
                    raise Mistake("with gamma = 0 your block returns 0: the residual is missing, return "
                                  "x + gamma * o(g beta^T).")
                raise Mistake("with gamma = 0, its value when the block is built, the block must return x unchanged, "
                              "and yours does not: multiply the attention path by gamma (not by 1 + gamma), "
                              "x + gamma * o(g beta^T), so that a fresh block is the identity.")
        for seed, (c, shape) in enumerate([(16, (2, 8, 8)), (32, (3, 4, 6)), (8, (1, 6, 4))]):
            ref = block(c, 0.8, seed)
            x = torch.randn(shape[0], c, *shape[1:], generator=g)
            with torch.no_grad():
                out, expected = run(ref, x), ref(x)
                if isinstance(out, torch.Tensor) and out.shape == x.shape and close(out, expected):
                    continue
                if not isinstance(out, torch.Tensor) or out.shape != x.shape:
                    shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                    raise Mistake(f"for x of shape {list(x.shape)} the output should have that shape, got {shape}.")
                diagnose(out, _attention_variants(ref, x))
            raise Mistake(f"for x of shape {list(x.shape)} and gamma = 0.8 your block differs from x + gamma * "
                          f"o(g beta^T) by up to {(out - expected).abs().max().item():.3g}.")
        ref = block(16, 0.5, 3)
        gamma = ref.gamma.detach().clone().requires_grad_(True)
        fn(torch.randn(2, 16, 4, 4, generator=g), ref.theta, ref.phi, ref.g, ref.o, gamma).square().sum().backward()
        if gamma.grad is None or ref.theta.weight.grad is None:
            raise Mistake("gamma or theta's weight gets no gradient: compute the output from them with torch "
                          "operations (no .item() or .detach()).")
        return "correct: pooled keys and values, softmax over the keys, the residual, and the identity at gamma 0."

    return run_check("self_attention", body)

"""Checks of chapter 05 (evaluation): the Fréchet distance, KID's unbiased MMD estimate, precision and recall."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ganlib import metrics
from ganlib.metrics.formulas import _psd_sqrt as psd_sqrt

from .core import CheckResult, Mistake, answers, close, diagnose, plain, run_check


def _features(seed: int, n: int, d: int, shift: float = 0.0, spread: float = 1.0) -> torch.Tensor:
    """Correlated Gaussian features [n, d] in float64 (a random mixing matrix per seed)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / d ** 0.5 + torch.eye(d, dtype=torch.float64)
    return spread * torch.randn(n, d, generator=g, dtype=torch.float64) @ mix + shift


def _number(out, what: str) -> float:
    if isinstance(out, torch.Tensor) and out.numel() == 1:
        return float(plain(out))
    if isinstance(out, (float, int, np.floating, np.integer)) or (isinstance(out, np.ndarray) and out.size == 1):
        return float(out)
    raise Mistake(f"{what} should return one number (a float), got {type(out).__name__}"
                  f"{' of shape ' + str(list(out.shape)) if hasattr(out, 'shape') else ''}.")


def _near(value: float, reference: float, rel: float = 1e-4) -> bool:
    return close(value, reference, rtol=rel, atol=rel * 1e-6)


def check_frechet_distance(fn: Callable) -> CheckResult:
    """fn(features_a [N, D], features_b [M, D]) -> ||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a C_b)^1/2)."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        for seed, (n, m, d) in enumerate([(60, 80, 4), (200, 150, 6), (40, 40, 3)]):
            a, b = _features(seed, n, d), _features(seed + 10, m, d, shift=0.5, spread=1.5)
            out = _number(fn(a.clone(), b.clone()), "frechet_distance")
            ref = metrics.frechet_distance(a, b)
            if _near(out, ref):
                continue
            mu_a, mu_b = a.mean(0).numpy(), b.mean(0).numpy()
            ca, cb = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
            ca_biased, cb_biased = ca * (n - 1) / n, cb * (m - 1) / m
            mean_term = float(((mu_a - mu_b) ** 2).sum())
            cross = ref - mean_term - np.trace(ca) - np.trace(cb)  # = -2 tr((C_a C_b)^1/2)
            sqrt_a, sqrt_b = psd_sqrt(ca), psd_sqrt(cb)
            known = [
                (mean_term, "only the means are compared: add the covariance term tr(C_a + C_b - 2 (C_a C_b)^1/2); "
                            "two sets with the same mean but different spreads must be far apart."),
                (ref - cross / 2, "the cross term needs a factor 2: tr(C_a + C_b - 2 (C_a C_b)^1/2)."),
                (mean_term + np.trace(ca + cb - 2 * np.sqrt(np.abs(ca @ cb))),
                 "np.sqrt takes the square root of each entry; (C_a C_b)^1/2 is a *matrix* square root: use "
                 "scipy.linalg.sqrtm (and keep its real part)."),
                (metrics.frechet_distance_from_stats(mu_a, ca_biased, mu_b, cb_biased),
                 "your covariances divide by N; FID's reference code (np.cov) divides by N - 1."),
                (ref ** 0.5, "this is the square root: the Fréchet distance of FID is the *squared* 2-Wasserstein "
                             "distance, ||mu_a - mu_b||^2 + tr(...), with no square root at the end."),
                (mean_term + np.trace(ca + cb - 2 * sqrt_a @ sqrt_b),
                 "C_a^1/2 C_b^1/2 is not (C_a C_b)^1/2 unless the covariances commute: take the square root "
                 "of the product."),
                (mean_term + np.trace(ca + cb), "the cross term -2 tr((C_a C_b)^1/2) is missing."),
            ]
            diagnose(out, known, lambda out, value: _near(out, float(value), 1e-3))
            raise Mistake(f"for two feature sets of shapes {list(a.shape)} and {list(b.shape)} the distance should "
                          f"be {ref:.4f}, yours is {out:.4f}.")
        a = _features(7, 100, 5)
        if not close(_number(fn(a.clone(), a.clone()), "frechet_distance"), 0.0, atol=1e-6):
            raise Mistake("the distance of a feature set to itself should be 0 (up to rounding).")
        return "correct on every test input, and 0 between a set and itself."

    return run_check("frechet_distance", body)


def _mmd2_variant(a: torch.Tensor, b: torch.Tensor, kernel: Callable, biased: bool = False,
                  u_statistic: bool = False) -> float:
    """MMD^2 estimates students write: the biased one, the U-statistic, or the exercise's, with any kernel."""
    m, n = a.shape[0], b.shape[0]
    kaa, kbb, kab = kernel(a, a), kernel(b, b), kernel(a, b)
    if biased:
        return float(kaa.mean() + kbb.mean() - 2 * kab.mean())
    within = (kaa.sum() - kaa.diagonal().sum()) / (m * (m - 1)) + (kbb.sum() - kbb.diagonal().sum()) / (n * (n - 1))
    if u_statistic:
        return float(within - 2 * (kab.sum() - kab.diagonal().sum()) / (m * (m - 1)))
    return float(within - 2 * kab.mean())


def check_mmd2_unbiased(fn: Callable) -> CheckResult:
    """fn(a [M, D], b [N, D]) -> the unbiased squared MMD with the kernel k(x, y) = (x.y / D + 1)^3."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        for seed, (m, n, d) in enumerate([(30, 30, 4), (25, 40, 8), (12, 9, 3)]):
            a, b = _features(seed, m, d), _features(seed + 20, n, d, shift=0.3)
            out = _number(fn(a.clone(), b.clone()), "mmd2_unbiased")
            ref = metrics.mmd2_unbiased(a, b)
            if _near(out, ref):
                continue
            k = metrics.polynomial_kernel
            k_aa, k_bb, k_ab = k(a, a), k(b, b), k(a, b)
            within = float((k_aa.sum() - k_aa.diagonal().sum()) / (m * (m - 1))
                           + (k_bb.sum() - k_bb.diagonal().sum()) / (n * (n - 1)))
            known = [
                (_mmd2_variant(a, b, k, biased=True),
                 "this is the biased estimate: leave out the diagonal k(x_i, x_i) of the within-set sums and divide "
                 "by M(M-1) and N(N-1) pairs. The diagonal adds a positive bias that shrinks only as 1/N."),
                (_mmd2_variant(a, b, lambda x, y: (x @ y.T + 1) ** 3),
                 "the kernel divides the dot product by the feature size D: k(x, y) = (x.y / D + 1)^3."),
                (_mmd2_variant(a, b, lambda x, y: (x @ y.T / x.shape[1]) ** 3),
                 "the kernel adds 1 before cubing: k(x, y) = (x.y / D + 1)^3."),
                (_mmd2_variant(a, b, lambda x, y: (x @ y.T / x.shape[1] + 1) ** 2),
                 "the kernel is cubic (power 3), not quadratic."),
                (within - float(k_ab.mean()), "the cross term counts twice: subtract 2 * mean k(a_i, b_j)."),
                (within + 2 * float(k_ab.mean()),
                 "wrong sign of the cross term: MMD^2 = E k(a, a') + E k(b, b') - 2 E k(a, b)."),
            ]
            if m == n:
                known.append((_mmd2_variant(a, b, k, u_statistic=True),
                              "you also left out the diagonal of the cross term: that is the U-statistic variant; "
                              "this exercise (like KID's reference code) averages k(a_i, b_j) over all M*N pairs."))
            diagnose(out, known, lambda out, value: _near(out, value, 1e-3))
            raise Mistake(f"for sets of shapes {list(a.shape)} and {list(b.shape)} the estimate should be "
                          f"{ref:.5f}, yours is {out:.5f}.")
        return "correct on every test input, including sets of different sizes."

    return run_check("mmd2_unbiased", body)


def _clusters(seed: int, n: int, centres: list[float], noise: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = torch.tensor(centres, dtype=torch.float64)[torch.arange(n) % len(centres)]  # [n]
    x = noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
    x[:, 0] += c
    return x  # [n, 2]


def _precision_recall_variant(real: torch.Tensor, fake: torch.Tensor, radius_k: int,
                              radii_from_other: bool = False) -> tuple[float, float]:
    """(precision, recall) as students get them wrong: radius_k-th smallest distance counting the sample itself
    as the radius; with `radii_from_other`, each query's own k-NN radius around it, testing the other set."""
    def radii(x):
        return torch.cdist(x, x).kthvalue(radius_k, dim=1).values

    if radii_from_other:
        inside_p = (torch.cdist(fake, real) <= radii(fake)[:, None]).any(1)
        inside_r = (torch.cdist(real, fake) <= radii(real)[:, None]).any(1)
    else:
        inside_p = metrics.in_manifold(fake, real, radii(real))
        inside_r = metrics.in_manifold(real, fake, radii(fake))
    return float(inside_p.double().mean()), float(inside_r.double().mean())


def check_precision_recall(fn: Callable) -> CheckResult:
    """fn(real [N, D], fake [M, D], k) -> (precision, recall) with k-nearest-neighbour manifolds."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        cases = [  # (real, fake, k): fakes miss a mode and spread too wide, so precision and recall differ
            (_clusters(0, 60, [0.0, 8.0]), _clusters(1, 45, [0.0], noise=1.6), 3),
            (_clusters(2, 50, [0.0, 6.0, 12.0]), _clusters(3, 70, [0.0, 6.0], noise=0.7), 3),
            (_clusters(4, 40, [0.0]), _clusters(5, 40, [1.0], noise=1.3), 5),
        ]
        for real, fake, k in cases:
            out = fn(real.clone(), fake.clone(), k)
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise Mistake(f"precision_recall should return a pair (precision, recall), got "
                              f"{type(out).__name__}.")
            p, r = _number(out[0], "precision"), _number(out[1], "recall")
            ref = metrics.precision_recall(real, fake, k)
            if _near(p, ref["precision"], 1e-6) and _near(r, ref["recall"], 1e-6):
                continue

            known = [
                ((ref["recall"], ref["precision"]), "precision and recall are swapped: precision is the share of "
                                                    "*generated* samples inside the real manifold, recall the share "
                                                    "of *real* samples inside the generated manifold."),
                (_precision_recall_variant(real, fake, k),
                 "your radius is the distance to the (k-1)-th other sample: the nearest 'neighbour' at distance 0 "
                 "is the sample itself; the radius is the distance to the k-th *other* sample."),
                (_precision_recall_variant(real, fake, k + 1, radii_from_other=True),
                 "each ball must sit around a sample of the manifold's own set with that sample's radius: for "
                 "precision, balls around the real samples with the real k-NN radii, and test the fakes."),
            ]
            diagnose((p, r), known, lambda out, value: _near(out[0], value[0], 1e-6)  # precision
                     and _near(out[1], value[1], 1e-6))  # recall
            raise Mistake(f"with k={k}, {len(real)} real and {len(fake)} generated samples, precision should be "
                          f"{ref['precision']:.3f} and recall {ref['recall']:.3f}; yours are {p:.3f} and {r:.3f}.")
        real = _clusters(6, 30, [0.0, 5.0])
        p, r = fn(real.clone(), real.clone(), 3)
        if not (_near(_number(p, "precision"), 1.0) and _near(_number(r, "recall"), 1.0)):
            raise Mistake("for identical real and generated sets, precision and recall should both be 1: a point "
                          "at distance 0 from a ball's centre is inside it (use <= radius).")
        return "correct on every test input; identical sets score 1 and 1."

    return run_check("precision_recall", body)


CHECKS = {
    "frechet_distance": check_frechet_distance,
    "mmd2_unbiased": check_mmd2_unbiased,
    "precision_recall": check_precision_recall,
}

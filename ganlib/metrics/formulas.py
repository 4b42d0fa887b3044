"""The formulas of the metrics, on any features [N, D]: toy mode coverage, the Fréchet distance, KID, the
Inception Score, precision and recall with k-nearest-neighbour manifolds, nearest-neighbour distances."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import GanlibError

__all__ = [
    "mode_coverage", "gaussian_stats", "frechet_distance_from_stats", "frechet_distance", "polynomial_kernel",
    "mmd2_unbiased", "kid", "inception_score", "knn_radii", "in_manifold", "precision_recall",
    "nearest_neighbour_distances", "feature_metrics"
]

# ----------------------------------------------------------------------------------------------------------
# Toy mode coverage


def mode_coverage(points: torch.Tensor, centres: torch.Tensor, std: float, threshold: float = 3.0) -> dict:
    """How many modes of a Gaussian mixture a set of samples covers.

    Args:
        points: samples [N, 2].
        centres: mode centres [K, 2].
        std: the modes' standard deviation.
        threshold: a sample is high quality when it is within `threshold` std of its nearest centre.

    Returns a dict: ``modes`` (covered modes), ``hq`` (share of high-quality samples), ``counts`` (high-quality
    samples per mode, a list), ``reverse_kl`` (KL from the high-quality samples' mode histogram to uniform).
    """
    assert points.ndim == 2 and points.shape[1] == centres.shape[1], (points.shape, centres.shape)
    dist = torch.cdist(points.double(), centres.double())  # [N, K]
    nearest_dist, nearest = dist.min(dim=1)
    hq = nearest_dist < threshold * std
    counts = torch.bincount(nearest[hq], minlength=len(centres))
    p = counts.double() / max(int(counts.sum()), 1)
    nz = p > 0
    reverse_kl = float((p[nz] * (p[nz] * len(centres)).log()).sum()) if nz.any() else float("nan")
    return {"modes": int(nz.sum()), "hq": float(hq.double().mean()), "counts": counts.tolist(),
            "reverse_kl": reverse_kl}


# ----------------------------------------------------------------------------------------------------------
# Fréchet distance


def gaussian_stats(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and (unbiased) covariance [D, D] of features [N, D], in float64."""
    f = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    assert f.ndim == 2 and f.shape[0] >= 2, f"features must be [N >= 2, D], got {f.shape}"
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance_from_stats(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(C1) + tr(C2) - 2 tr((C1^1/2 C2 C1^1/2)^1/2): the Fréchet (2-Wasserstein) distance
    between two Gaussians. Computed with symmetric eigendecompositions, so singular covariances are fine."""
    s1 = _psd_sqrt(cov1)
    m = s1 @ cov2 @ s1
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * cross)


def frechet_distance(features_a, features_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, D] and [M, D]."""
    return frechet_distance_from_stats(*gaussian_stats(features_a), *gaussian_stats(features_b))


# ----------------------------------------------------------------------------------------------------------
# Kernel inception distance (KID)


def _as_double(features) -> torch.Tensor:
    f = features.detach().cpu() if isinstance(features, torch.Tensor) else torch.from_numpy(np.asarray(features))
    assert f.ndim == 2, f"features must be [N, D], got {list(f.shape)}"
    return f.double()


def polynomial_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KID's kernel k(x, y) = (x.y / D + 1)^3 between features a [N, D] and b [M, D] -> [N, M]."""
    return (a @ b.T / a.shape[1] + 1) ** 3


def mmd2_unbiased(a: torch.Tensor, b: torch.Tensor) -> float:
    """The unbiased estimate of the squared MMD between feature sets a [M, D] and b [N, D] under
    `polynomial_kernel`: the means of k over distinct pairs within a and within b (diagonals left out, which
    removes the bias), minus twice the mean of k over all pairs across the sets. Its expectation is 0 when
    both sets come from one distribution, whatever their size; single estimates can be negative."""
    m, n = a.shape[0], b.shape[0]
    assert m >= 2 and n >= 2, "each set needs at least 2 samples"
    k_aa, k_bb, k_ab = polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b)
    within_a = (k_aa.sum() - k_aa.diagonal().sum()) / (m * (m - 1))
    within_b = (k_bb.sum() - k_bb.diagonal().sum()) / (n * (n - 1))
    return float(within_a + within_b - 2 * k_ab.mean())


def kid(features_a, features_b, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel inception distance on any features: (mean, std) of `mmd2_unbiased` over `subsets` random pairs
    of subsets of `subset_size` samples (without replacement; at most the smaller set's size), as in
    torch-fidelity and clean-fid (the std is theirs too: the population one, over the subsets). Deterministic
    given `seed`. Papers report it x 10^3 on Inception features; on other features its scale is theirs (the
    kernel's 1/D assumes features of order 1)."""
    a, b = _as_double(features_a), _as_double(features_b)
    assert a.shape[1] == b.shape[1], f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}"
    m = min(subset_size, a.shape[0], b.shape[0])
    g = torch.Generator().manual_seed(seed)
    values = torch.tensor([mmd2_unbiased(a[torch.randperm(a.shape[0], generator=g)[:m]],
                                         b[torch.randperm(b.shape[0], generator=g)[:m]]) for _ in range(subsets)],
                          dtype=torch.float64)
    return float(values.mean()), float(values.std(unbiased=False))


# ----------------------------------------------------------------------------------------------------------
# Inception Score


def inception_score(probs: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """The Inception Score (Salimans et al. 2016) from class probabilities [N, K]: exp(E_x KL(p(y|x) || p(y))),
    with p(y) the mean of p(y|x) over the split; (mean, std) over `splits` parts of the samples, part i being
    rows [i N // splits, (i + 1) N // splits), as in the authors' code and torch-fidelity (which use Inception-v3's
    ImageNet probabilities, 50,000 samples and 10 splits). It lies between 1 (every sample gets the same
    prediction) and K (confident, equally many per class); it never looks at real data."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    if p.ndim != 2:
        raise GanlibError(f"inception_score: probs must be [N, K], got shape {list(p.shape)}.")
    n = p.shape[0]
    if not 1 <= splits <= n:
        raise GanlibError(f"inception_score: {splits} splits of {n} samples: use between 1 and {n} splits, or "
                          f"more samples.")
    scores = []
    for part in (p[i * n // splits: (i + 1) * n // splits] for i in range(splits)):
        marginal = part.mean(dim=0, keepdim=True)  # p(y) [1, K]
        kl = (part * (part.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())).sum(dim=1)  # [n]
        scores.append(kl.mean().exp())
    scores = torch.stack(scores)
    return float(scores.mean()), float(scores.std(unbiased=False)) if splits > 1 else 0.0


# ----------------------------------------------------------------------------------------------------------
# Precision and recall with k-nearest-neighbour manifolds; nearest neighbours


def _pairwise_distances(a: torch.Tensor, b: torch.Tensor, block: int = 1024):
    """Yield (rows, distances [len(rows), M]) between a [N, D] and b [M, D], a block of rows at a time."""
    for i in range(0, a.shape[0], block):
        yield slice(i, i + block), torch.cdist(a[i: i + block], b)


def knn_radii(features, k: int = 3) -> torch.Tensor:
    """Distance of each sample [N, D] to its k-th nearest *other* sample -> [N] (the radius of its ball in
    the k-NN estimate of the set's manifold)."""
    f = _as_double(features)
    assert 1 <= k < f.shape[0], f"k={k} needs more than k samples, got {f.shape[0]}"
    radii = torch.empty(f.shape[0], dtype=torch.float64)
    for rows, d in _pairwise_distances(f, f):
        radii[rows] = d.topk(k + 1, dim=1, largest=False).values[:, k]  # the smallest (0) is the sample itself
    return radii


def in_manifold(queries, manifold, radii: torch.Tensor) -> torch.Tensor:
    """For each query [N, D]: does it lie in at least one ball (centre manifold[j], radius radii[j])? -> [N] bool."""
    q, m = _as_double(queries), _as_double(manifold)
    inside = torch.empty(q.shape[0], dtype=torch.bool)
    for rows, d in _pairwise_distances(q, m):
        inside[rows] = (d <= radii[None]).any(dim=1)
    return inside


def precision_recall(real_features, fake_features, k: int = 3, real_radii: torch.Tensor | None = None) -> dict:
    """Improved precision and recall (Kynkaanniemi et al. 2019): each set's manifold is the union of balls
    around its samples reaching their k-th nearest neighbour. ``precision``: share of generated samples inside
    the real manifold (are the samples realistic?). ``recall``: share of real samples inside the generated
    manifold (is all of the data covered?). `real_radii`: `knn_radii(real_features, k)`, when several
    generated sets are compared with one real set (it is the expensive part)."""
    real, fake = _as_double(real_features), _as_double(fake_features)
    real_radii = knn_radii(real, k) if real_radii is None else real_radii
    assert real_radii.shape == (real.shape[0],), f"real_radii {list(real_radii.shape)} != [{real.shape[0]}]"
    precision = in_manifold(fake, real, real_radii).double().mean()
    recall = in_manifold(real, fake, knn_radii(fake, k)).double().mean()
    return {"precision": float(precision), "recall": float(recall)}


def nearest_neighbour_distances(queries, reference) -> torch.Tensor:
    """Euclidean distance from each query [N, D] (or images [N, C, H, W], flattened) to its nearest
    reference sample [M, D] -> [N]. A generator that copies its training images has distances near 0 to the
    training set; fresh real images do not."""
    q = _as_double(torch.as_tensor(queries).reshape(len(queries), -1))
    r = _as_double(torch.as_tensor(reference).reshape(len(reference), -1))
    out = torch.empty(q.shape[0], dtype=torch.float64)
    for rows, d in _pairwise_distances(q, r):
        out[rows] = d.min(dim=1).values
    return out


def feature_metrics(real_features, fake_features, k: int = 3, kid_subsets: int = 100,
                    kid_subset_size: int = 1000, seed: int = 0, real_radii: torch.Tensor | None = None) -> dict:
    """``fd``, ``kid`` and ``kid_std``, ``precision`` and ``recall`` of generated against real features
    (`real_radii`: see `precision_recall`)."""
    kid_mean, kid_std = kid(real_features, fake_features, kid_subsets, kid_subset_size, seed)
    return {"fd": frechet_distance(real_features, fake_features), "kid": kid_mean, "kid_std": kid_std,
            **precision_recall(real_features, fake_features, k, real_radii), "n": len(fake_features)}

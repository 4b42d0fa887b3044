"""Chapter 05's checks pass correct answers (written the way a student would) and name each typical mistake."""

import numpy as np
import pytest
import scipy.linalg
import torch
from check_helpers import lenient, message  # noqa: F401  (lenient is an autouse fixture)

from gancourse import checks

# ---- Fréchet distance


def fd(a, b, sqrt=lambda m: scipy.linalg.sqrtm(m).real, ddof=1, factor=2.0, covariance=True, root=False):
    a, b = a.numpy(), b.numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False, ddof=ddof), np.cov(b, rowvar=False, ddof=ddof)
    value = ((mu_a - mu_b) ** 2).sum() + (np.trace(ca + cb - factor * sqrt(ca @ cb)) if covariance else 0.0)
    return float(value ** 0.5 if root else value)


def test_frechet_distance_passes_a_scipy_answer_and_a_torch_one():
    assert checks.check_frechet_distance(fd).passed

    def with_torch(a, b):  # eigenvalues of C_a C_b are those of the symmetric C_a^1/2 C_b C_a^1/2
        ca, cb = torch.cov(a.T), torch.cov(b.T)
        ev = torch.linalg.eigvals(ca @ cb).real.clamp(min=0)
        return ((a.mean(0) - b.mean(0)) ** 2).sum() + torch.trace(ca + cb) - 2 * ev.sqrt().sum()

    assert checks.check_frechet_distance(with_torch).passed


@pytest.mark.parametrize("wrong,expected", [
    (lambda a, b: fd(a, b, covariance=False), "only the means are compared"),
    (lambda a, b: fd(a, b, factor=1.0), "needs a factor 2"),
    (lambda a, b: fd(a, b, sqrt=lambda m: np.sqrt(np.abs(m))), "matrix* square root"),
    (lambda a, b: fd(a, b, ddof=0), "divide by N"),
    (lambda a, b: fd(a, b, root=True), "*squared* 2-Wasserstein"),
    (lambda a, b: fd(a, b, factor=0.0), "cross term -2 tr((C_a C_b)^1/2) is missing"),
    (lambda a, b: fd(a, b) + 1.0, "the distance should be"),
    (lambda a, b: "12", "should return one number"),
])
def test_frechet_distance_mistakes(wrong, expected):
    assert expected in message(checks.check_frechet_distance(wrong))


def test_frechet_distance_product_of_square_roots():
    def separate_roots(a, b):
        a, b = a.numpy(), b.numpy()
        ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        cross = scipy.linalg.sqrtm(ca).real @ scipy.linalg.sqrtm(cb).real
        return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * cross))

    assert "unless the covariances commute" in message(checks.check_frechet_distance(separate_roots))


# ---- unbiased MMD^2


def mmd(a, b, kernel=lambda x, y: (x @ y.T / x.shape[1] + 1) ** 3, biased=False, cross=2.0, u_stat=False):
    m, n = len(a), len(b)
    kaa, kbb, kab = kernel(a, a), kernel(b, b), kernel(a, b)
    if biased:
        return float(kaa.mean() + kbb.mean() - 2 * kab.mean())
    within = (kaa.sum() - kaa.trace()) / (m * (m - 1)) + (kbb.sum() - kbb.trace()) / (n * (n - 1))
    across = (kab.sum() - kab.trace()) / (m * (m - 1)) if u_stat else kab.mean()
    return float(within - cross * across)


def test_mmd2_unbiased_passes():
    assert checks.check_mmd2_unbiased(mmd).passed


@pytest.mark.parametrize("wrong,expected", [
    (lambda a, b: mmd(a, b, biased=True), "this is the biased estimate"),
    (lambda a, b: mmd(a, b, kernel=lambda x, y: (x @ y.T + 1) ** 3), "divides the dot product by the feature size"),
    (lambda a, b: mmd(a, b, kernel=lambda x, y: (x @ y.T / x.shape[1]) ** 3), "adds 1 before cubing"),
    (lambda a, b: mmd(a, b, kernel=lambda x, y: (x @ y.T / x.shape[1] + 1) ** 2), "is cubic"),
    (lambda a, b: mmd(a, b, cross=1.0), "the cross term counts twice"),
    (lambda a, b: mmd(a, b, cross=-2.0), "wrong sign of the cross term"),
    (lambda a, b: mmd(a, b, u_stat=True), "U-statistic variant"),
])
def test_mmd2_unbiased_mistakes(wrong, expected):
    assert expected in message(checks.check_mmd2_unbiased(wrong))


# ---- precision and recall


def pr(real, fake, k, self_counts=False, swap=False, strict=False):
    def radii(x):
        return torch.cdist(x, x).sort(dim=1).values[:, k - 1 if self_counts else k]

    def share(queries, centres, r):
        d = torch.cdist(queries, centres)
        return float(((d < r[None]) if strict else (d <= r[None])).any(dim=1).double().mean())

    p, r = share(fake, real, radii(real)), share(real, fake, radii(fake))
    return (r, p) if swap else (p, r)


def own_radius(real, fake, k):
    """Each query gets its own set's k-NN radius, and counts when a sample of the other set lies within it."""
    def radii(x):
        return torch.cdist(x, x).sort(dim=1).values[:, k]

    p = (torch.cdist(fake, real) <= radii(fake)[:, None]).any(1).double().mean()
    r = (torch.cdist(real, fake) <= radii(real)[:, None]).any(1).double().mean()
    return float(p), float(r)


def test_precision_recall_passes():
    assert checks.check_precision_recall(pr).passed


@pytest.mark.parametrize("wrong,expected", [
    (lambda r, f, k: pr(r, f, k, swap=True), "precision and recall are swapped"),
    (lambda r, f, k: pr(r, f, k, self_counts=True), "is the sample itself"),
    (lambda r, f, k: own_radius(r, f, k), "each ball must sit around a sample"),
    (lambda r, f, k: pr(r, f, k)[0], "should return a pair"),
])
def test_precision_recall_mistakes(wrong, expected):
    assert expected in message(checks.check_precision_recall(wrong))

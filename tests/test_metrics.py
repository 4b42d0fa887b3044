import math

import numpy as np
import pytest
import scipy.linalg
import torch

from ganlib import data, metrics
from ganlib.errors import GanlibError


def test_mode_coverage_protocol():
    ring = data.load("ring8")
    exact = ring.centres.repeat(10, 1)
    m = metrics.mode_coverage(exact, ring.centres, ring.std)
    assert m["modes"] == 8 and m["hq"] == 1.0 and m["counts"] == [10] * 8 and abs(m["reverse_kl"]) < 1e-12
    one = ring.centres[:1].repeat(80, 1) + 0.01 * torch.randn(80, 2)
    m = metrics.mode_coverage(one, ring.centres, ring.std)
    assert m["modes"] == 1 and math.isclose(m["reverse_kl"], math.log(8))
    # 3 std is the boundary: 2.9 std in, 3.1 std out
    pts = ring.centres[:2] + torch.tensor([[0.029, 0.0], [0.031, 0.0]])
    m = metrics.mode_coverage(pts, ring.centres, ring.std)
    assert m["hq"] == 0.5 and m["modes"] == 1
    # real data covers everything with ~99 % in 3 std (a 2-D Gaussian: 1 - exp(-9/2) = 98.9 %)
    m = metrics.mode_coverage(ring.points[:20000], ring.centres, ring.std)
    assert m["modes"] == 8 and abs(m["hq"] - (1 - math.exp(-4.5))) < 0.003


def test_frechet_distance_closed_form_diagonal():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([2.0, 1.0, 0.5])
    fd = metrics.frechet_distance_from_stats(mu1, np.diag(s1 ** 2), mu2, np.diag(s2 ** 2))
    # commuting covariances: ||mu1 - mu2||^2 + sum (s1 - s2)^2
    assert math.isclose(fd, 5.0 + 2.0, rel_tol=1e-12)


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    c1, c2 = a @ a.T, b @ b.T
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    assert math.isclose(metrics.frechet_distance_from_stats(mu1, c1, mu2, c2), expected, rel_tol=1e-8)


def test_frechet_distance_of_samples_approaches_the_gaussians():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200_000, 3, generator=g) * torch.tensor([1.0, 2.0, 0.5])
    b = torch.randn(200_000, 3, generator=g) * torch.tensor([2.0, 1.0, 0.5]) + torch.tensor([1.0, 0.0, -2.0])
    assert abs(metrics.frechet_distance(a, b) - (5.0 + 2.0)) < 0.05
    assert metrics.frechet_distance(a, a) < 1e-6
    # singular covariance (a dead feature) is fine
    a[:, 2] = 0
    assert math.isfinite(metrics.frechet_distance(a, a))


@pytest.fixture(scope="module")
def judge():
    return metrics.judge_for("digits", 16)


def test_digits_classifier_and_floor(judge):
    assert judge.test_accuracy > 0.95
    test = data.load("digits", 16, split="test")
    x, y = test.batch(torch.arange(len(test)))
    real = judge.score(x, y)
    assert real["classes"] == 10 and real["confidence"] > 0.9 and real["label_accuracy"] > 0.95
    noise = judge.score(torch.rand(len(test), 1, 16, 16) * 2 - 1)
    assert noise["fd"] > 10 * real["fd"]
    ones = judge.score(x[y == 1])
    assert ones["classes"] == 1
    # a dropped half of the classes is penalised, adding blur too
    half = judge.score(x[y < 5])
    blurred = judge.score(torch.nn.functional.avg_pool2d(x, 3, 1, 1))
    assert half["fd"] > 3 * real["fd"] and blurred["fd"] > 2 * real["fd"]


def test_judge_is_cached_on_disk(judge, tmp_path, monkeypatch):
    files = list(metrics.cache_dir().glob("classifier-digits-16-*.pt"))
    assert len(files) == 1
    metrics._JUDGES.clear()
    again = metrics.judge_for("digits", 16)  # loaded, not retrained: same weights
    for p, q in zip(again.model.parameters(), judge.model.parameters()):
        assert torch.equal(p, q)


def test_judge_rejects_wrong_images(judge):
    with pytest.raises(GanlibError, match="1x16x16"):
        judge.score(torch.zeros(4, 3, 16, 16))


def test_judge_needs_labels():
    with pytest.raises(GanlibError, match="labelled image dataset"):
        metrics.ImageJudge("ring8", 16)


# ----------------------------------------------------------------------------------------------------------
# The shapes judge


@pytest.fixture(scope="module")
def shapes_judge():
    return metrics.judge_for("shapes", 32)


@pytest.fixture(scope="module")
def shapes_test():
    d = data.load("shapes", 32, split="test")
    return d.batch(torch.arange(1000))[0], d.factors


def test_shapes_judge_real_data_and_what_is_not_a_shape(shapes_judge, shapes_test):
    x, factors = shapes_test
    assert shapes_judge.test_accuracy > 0.95
    real = shapes_judge.score(x)
    assert real["recognisable"] > 0.97 and real["classes"] == 18 and real["n"] == 1000
    noise = shapes_judge.score(torch.rand(500, 3, 32, 32) * 2 - 1)
    assert noise["recognisable"] < 0.05 and noise["fd"] > 100 * real["fd"]
    grey = shapes_judge.score(x.mean(1, keepdim=True).expand(-1, 3, -1, -1))
    assert grey["colour_ok"] < 0.05 and grey["recognisable"] < 0.05
    blended = shapes_judge.score((x + x.roll(1, 0)) / 2)  # two shapes at half strength each
    assert blended["recognisable"] < 0.2
    circles = shapes_judge.score(x[factors["shape"][:1000] == 0])
    assert circles["classes"] == 6 and circles["fd"] > 3 * real["fd"]  # one shape of 3: 6 pairs, far off


def test_shapes_judge_serves_every_resolution(shapes_judge):
    assert metrics.judge_for("shapes", 16) is shapes_judge and metrics.judge_for("shapes", 64) is shapes_judge
    by_res = {r: shapes_judge.real_score(500, r) for r in (4, 16, 64)}
    assert by_res[16]["recognisable"] > 0.97 and by_res[64]["recognisable"] > 0.97
    assert by_res[4]["recognisable"] < 0.3  # 4x4 shapes, blown up, are blocks, not shapes
    test = data.load("shapes", 16, split="test")
    x16 = test.batch(torch.arange(200))[0]
    assert metrics.classifier_metrics(x16, "shapes")["recognisable"] > 0.95
    labels = test.labels[:200]
    assert shapes_judge.score(x16, labels)["label_accuracy"] > 0.95
    assert shapes_judge.score(x16, (labels + 1) % 3)["label_accuracy"] < 0.05
    with pytest.raises(GanlibError, match="RGB images"):
        shapes_judge.score(torch.zeros(2, 1, 16, 16))

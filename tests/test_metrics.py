import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from gancourse import evaluation
from ganlib import data, metrics
from ganlib.errors import GanlibError
from ganlib.shapes import SHAPE_BACKGROUNDS, SHAPE_COLOURS


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
    return evaluation.judge_for("digits", 16)


def test_digits_classifier_and_floor(judge):
    assert judge.test_accuracy > 0.95
    test = data.load("digits", 16, split="test")
    x, y = test.batch(torch.arange(len(test)))
    real = judge.score(x, y)
    assert real["classes"] == 10 and real["confidence"] > 0.9 and real["label_accuracy"] > 0.95
    noise = judge.score(torch.rand(len(test), 1, 16, 16) * 2 - 1)
    assert noise["fd"] > 10 * real["fd"]
    # only ones: 1 class covered. All 182 ones, so that the class count is about the metric rather than about
    # one misread image (a fifth of the fair share of 36 held-out ones is a single image)
    every = data.load("digits", 16, split="all")
    ones = judge.score(every.batch(torch.nonzero(every.labels == 1)[:, 0])[0])
    assert ones["n"] == 182 and ones["classes"] == 1
    # a dropped half of the classes is penalised, adding blur too
    half = judge.score(x[y < 5])
    blurred = judge.score(torch.nn.functional.avg_pool2d(x, 3, 1, 1))
    assert half["fd"] > 3 * real["fd"] and blurred["fd"] > 2 * real["fd"]


def test_judge_is_cached_on_disk(monkeypatch, tmp_path):
    """A judge that is not shipped (digits at 8x8) is trained once, then loaded from the cache folder (unless
    the file there is damaged)."""
    monkeypatch.setenv("GANLIB_CACHE", str(tmp_path))  # a cache of its own: the judge below is a weak one
    monkeypatch.setattr(evaluation.ImageJudge, "images_seen", 1)  # 2 epochs: this is about the file, not accuracy
    first = evaluation.ImageJudge("digits", 8)
    files = list(evaluation.cache_dir().glob("classifier-digits-8-*.pt"))
    assert len(files) == 1 and not (evaluation.PRETRAINED / files[0].name).exists()
    again = evaluation.ImageJudge("digits", 8)  # loaded, not retrained: same weights
    for p, q in zip(again.model.parameters(), first.model.parameters()):
        assert torch.equal(p, q)
    raw = bytearray(files[0].read_bytes())  # a damaged cache file is not loaded: the judge is trained again
    raw[len(raw) // 2: len(raw) // 2 + 800] = bytes(800)
    files[0].write_bytes(bytes(raw))

    def train_classifier(*args, **kwargs):
        raise RuntimeError("trained again")

    monkeypatch.setattr(evaluation.judges, "train_classifier", train_classifier)  # where ImageJudge looks it up
    with pytest.raises(RuntimeError, match="trained again"):
        evaluation.ImageJudge("digits", 8)


def test_judge_rejects_wrong_images(judge):
    with pytest.raises(GanlibError, match="1x16x16"):
        judge.score(torch.zeros(4, 3, 16, 16))


def test_judge_needs_labels():
    with pytest.raises(GanlibError, match="labelled image dataset"):
        evaluation.ImageJudge("ring8", 16)


# ----------------------------------------------------------------------------------------------------------
# KID, precision and recall, nearest neighbours: against direct computations


def _direct_mmd2(a, b):
    """The unbiased MMD^2 with KID's kernel, written as explicit loops over pairs."""
    k = lambda x, y: (float(x @ y) / len(x) + 1) ** 3
    m, n = len(a), len(b)
    within_a = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    within_b = sum(k(b[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    across = sum(k(a[i], b[j]) for i in range(m) for j in range(n)) / (m * n)
    return within_a + within_b - 2 * across


def test_polynomial_kernel_is_sklearns():
    from sklearn.metrics.pairwise import polynomial_kernel

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 5, generator=g).double(), torch.randn(4, 5, generator=g).double()
    expected = polynomial_kernel(a.numpy(), b.numpy(), degree=3, gamma=1 / 5, coef0=1)
    assert np.allclose(metrics.polynomial_kernel(a, b).numpy(), expected, rtol=1e-12)


def test_mmd2_unbiased_matches_the_direct_sum():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(9, 4, generator=g).double(), torch.randn(6, 4, generator=g).double() + 0.5
    assert math.isclose(metrics.mmd2_unbiased(a, b), _direct_mmd2(a, b), rel_tol=1e-10)
    # a single subset holding every sample is the estimator on the whole sets (it ignores order)
    mean, std = metrics.kid(a[:6], b, subsets=1, subset_size=6)
    assert math.isclose(mean, _direct_mmd2(a[:6], b), rel_tol=1e-10) and std == 0.0


def test_kid_is_unbiased_and_sees_a_shift():
    g = torch.Generator().manual_seed(2)
    real, same = torch.randn(2000, 16, generator=g), torch.randn(2000, 16, generator=g)
    shifted = torch.randn(2000, 16, generator=g) + 0.3
    mean, std = metrics.kid(real, same, subsets=50, subset_size=200)
    assert abs(mean) < 2 * std  # 0 in expectation, even with subsets of 200
    # the mean over many small subsets agrees with one big estimate (no small-sample bias, unlike FD)
    assert abs(mean - metrics.mmd2_unbiased(real.double(), same.double())) < 2 * std / math.sqrt(50) + 1e-3
    s_mean, s_std = metrics.kid(real, shifted, subsets=50, subset_size=200)
    assert s_mean > 5 * s_std and s_mean > 10 * abs(mean)
    assert metrics.kid(real, shifted, subsets=5, subset_size=100, seed=3) == \
        metrics.kid(real, shifted, subsets=5, subset_size=100, seed=3)
    g = torch.Generator().manual_seed(4)  # the spread is the population std over the subsets (torch-fidelity's)
    two = [metrics.mmd2_unbiased(real[torch.randperm(2000, generator=g)[:100]].double(),
                                 shifted[torch.randperm(2000, generator=g)[:100]].double()) for _ in range(2)]
    assert metrics.kid(real, shifted, subsets=2, subset_size=100, seed=4) == pytest.approx(
        (sum(two) / 2, abs(two[0] - two[1]) / 2), rel=1e-9)
    assert metrics.kid(real, shifted, subsets=1, subset_size=100)[1] == 0.0


def test_inception_score_bounds_and_direct_formula():
    k = 10
    uniform = torch.full((100, k), 1.0 / k)
    assert metrics.inception_score(uniform)[0] == pytest.approx(1.0)  # no sample is confident
    confident = torch.eye(k).repeat(10, 1)  # [100, 10]: one-hot, every class equally often in every split
    assert metrics.inception_score(confident) == pytest.approx((k, 0.0))
    assert metrics.inception_score(torch.eye(k)[[3] * 100])[0] == pytest.approx(1.0)  # confident, one class only
    g = torch.Generator().manual_seed(0)
    probs = torch.randn(60, 4, generator=g).mul(2).softmax(dim=1).double()
    direct = []
    for part in probs.split(20):
        marginal = part.mean(0)
        direct.append(math.exp(sum(float((q * (q / marginal).log()).sum()) for q in part) / len(part)))
    mean, std = metrics.inception_score(probs, splits=3)
    assert mean == pytest.approx(np.mean(direct), rel=1e-9) and std == pytest.approx(np.std(direct), rel=1e-9)


@pytest.mark.parametrize("n,splits", [(1005, 10), (12, 10), (23, 5), (7, 7)])
def test_inception_score_splits_as_the_authors_do(n, splits):
    """openai/improved-gan and torch-fidelity: split i is rows [i n // splits, (i + 1) n // splits), so every split
    has n // splits or one more samples; the mean and the population std of the splits' scores."""
    from torch_fidelity.metric_isc import isc_features_to_metric

    g = torch.Generator().manual_seed(n)
    logits = torch.randn(n, 6, generator=g, dtype=torch.float64) * 2
    probs = logits.softmax(dim=1)
    scores = []
    for i in range(splits):
        part = probs[i * n // splits: (i + 1) * n // splits]
        marginal = part.mean(0)
        scores.append(math.exp(sum(float((q * (q / marginal).log()).sum()) for q in part) / len(part)))
    mean, std = metrics.inception_score(probs, splits=splits)
    assert mean == pytest.approx(np.mean(scores), rel=1e-9) and std == pytest.approx(np.std(scores), rel=1e-9)
    theirs = isc_features_to_metric(logits, splits=splits, shuffle=False)
    assert (mean, std) == pytest.approx((theirs["inception_score_mean"], theirs["inception_score_std"]), rel=1e-9)


def test_inception_score_refuses_more_splits_than_samples():
    probs = torch.full((5, 3), 1 / 3)
    for splits in (6, 0):
        with pytest.raises(GanlibError, match=f"inception_score: {splits} splits of 5 samples: use between 1 and 5"):
            metrics.inception_score(probs, splits=splits)


def test_knn_radii_and_manifold_membership_match_brute_force():
    g = torch.Generator().manual_seed(4)
    real, fake = torch.randn(30, 3, generator=g), torch.randn(25, 3, generator=g) * 1.5
    d = torch.cdist(real.double(), real.double())
    # k=3: the 4th smallest distance, as the smallest (0) is the point itself
    expected = torch.tensor([sorted(row.tolist())[3] for row in d], dtype=torch.float64)
    assert torch.allclose(metrics.knn_radii(real, 3), expected)
    radii = metrics.knn_radii(real, 3)
    inside = [any(float((f - r).double().norm()) <= float(radii[j]) for j, r in enumerate(real)) for f in fake]
    assert metrics.in_manifold(fake, real, radii).tolist() == inside
    pr = metrics.precision_recall(real, fake, k=3)
    recall = metrics.in_manifold(real, fake, metrics.knn_radii(fake, 3)).double().mean()
    assert math.isclose(pr["precision"], sum(inside) / len(inside)) and math.isclose(pr["recall"], float(recall))
    assert metrics.precision_recall(real, fake, k=3, real_radii=radii) == pr  # precomputed radii: the same


def test_precision_recall_on_identical_sets_a_dropped_mode_and_noise():
    g = torch.Generator().manual_seed(5)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    modes = torch.arange(1000) % 2
    real = centres[modes] + torch.randn(1000, 2, generator=g)
    same = metrics.precision_recall(real, real)
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    fresh = centres[modes] + torch.randn(1000, 2, generator=g)
    dropped = fresh[modes == 0]  # realistic samples of one of the two modes
    pr = metrics.precision_recall(real, dropped)
    assert pr["precision"] > 0.95 and 0.4 < pr["recall"] < 0.55  # realistic, but half the data is missed
    noisy = metrics.precision_recall(real, fresh + 3 * torch.randn(1000, 2, generator=g))
    assert noisy["precision"] < 0.6 < metrics.precision_recall(real, fresh)["precision"]


def test_nearest_neighbour_distances():
    g = torch.Generator().manual_seed(6)
    train = torch.rand(50, 1, 4, 4, generator=g)
    copies = train[torch.tensor([3, 7, 7])]
    assert torch.equal(metrics.nearest_neighbour_distances(copies, train), torch.zeros(3, dtype=torch.float64))
    other = torch.rand(5, 1, 4, 4, generator=g)
    expected = torch.cdist(other.flatten(1).double(), train.flatten(1).double()).min(1).values
    assert torch.allclose(metrics.nearest_neighbour_distances(other, train), expected)


def test_feature_metrics_collects_them():
    g = torch.Generator().manual_seed(7)
    a, b = torch.randn(300, 4, generator=g), torch.randn(200, 4, generator=g) + 1
    m = metrics.feature_metrics(a, b, kid_subsets=10, kid_subset_size=100)
    assert m["fd"] == metrics.frechet_distance(a, b) and (m["kid"], m["kid_std"]) == metrics.kid(a, b, 10, 100)
    assert {k: m[k] for k in ("precision", "recall")} == metrics.precision_recall(a, b) and m["n"] == 200


# ----------------------------------------------------------------------------------------------------------
# Feature extractors


def test_classifier_features():
    judge = evaluation.judge_for("digits", 16)
    test = data.load("digits", 16, split="test")
    x, _ = test.batch(torch.arange(40))
    extractor = evaluation.feature_extractor("classifier", "digits", 16)
    assert isinstance(extractor, evaluation.FeatureExtractor) and extractor.judge is judge
    f = extractor(x, batch=16)
    assert f.shape == (40, extractor.dim) and torch.allclose(f, evaluation.classify(judge.model, x)[0], atol=1e-5)
    with pytest.raises(GanlibError, match="1x16x16"):
        extractor(torch.zeros(2, 1, 8, 8))
    with pytest.raises(GanlibError, match="unknown features 'lenet'"):
        evaluation.feature_extractor("lenet", "digits", 16)


def test_inception_offline_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    monkeypatch.setenv("GANLIB_OFFLINE", "1")
    with pytest.raises(GanlibError, match="downloads are off.*offline classifier features"):
        evaluation.feature_extractor("inception", "digits", 16)


def test_inception_features_shapes_and_grey_images(monkeypatch):
    from torchvision.models import Inception3

    torch.manual_seed(0)
    random_weights = Inception3(num_classes=1000, aux_logits=True, init_weights=False).state_dict()
    monkeypatch.setattr(evaluation.extractors, "_inception_state_dict", lambda: random_weights)  # no download
    extractor = evaluation.InceptionFeatures(device="cpu")
    grey = torch.rand(2, 1, 16, 16) * 2 - 1
    f = extractor(grey)
    assert f.shape == (2, 2048) and f.dtype == torch.float32
    assert torch.allclose(f, extractor(grey.repeat(1, 3, 1, 1)))  # grey is read as R = G = B
    with pytest.raises(GanlibError, match="1 or 3"):
        extractor(torch.zeros(2, 2, 16, 16))


def _features(n: int, shift: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 48, generator=g, dtype=torch.float64) @ torch.randn(48, 48, generator=g,
                                                                                dtype=torch.float64) / 7 + shift)


def test_fd_kid_precision_recall_equal_torch_fidelity_on_the_same_features():
    """ganlib's formulas against torch-fidelity's own functions (what `--features fid` relies on for being
    comparable with papers), on the same random features: within 1e-6 relative."""
    from torch_fidelity import metric_fid, metric_kid, metric_prc

    real, fake = _features(400, 0.0, 1), _features(300, 0.3, 2)
    theirs = metric_fid.fid_statistics_to_metric(metric_fid.fid_features_to_statistics(real),
                                                 metric_fid.fid_features_to_statistics(fake), verbose=False)
    assert metrics.frechet_distance(real, fake) == pytest.approx(theirs["frechet_inception_distance"], rel=1e-6)
    # the unbiased MMD^2 with the cubic kernel (torch-fidelity's needs sets of equal size)
    assert metrics.mmd2_unbiased(real[:300], fake) == pytest.approx(
        float(metric_kid.kernel_mmd(real[:300].numpy(), fake.numpy())), rel=1e-6)
    # KID on subsets as large as the sets: every subset is the whole set, so the random draws cannot differ
    kid_mean, _ = metrics.kid(real[:300], fake, subsets=3, subset_size=300)
    theirs = metric_kid.kid_features_to_metric(real[:300], fake, kid_subsets=3, kid_subset_size=300, verbose=False)
    assert kid_mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-6)
    ours = metrics.precision_recall(real, fake, k=3)
    theirs = metric_prc.prc_features_to_metric(fake, real, prc_neighborhood=3, verbose=False)  # generated first
    assert 0 < ours["precision"] < 1 and 0 < ours["recall"] < 1
    assert ours["precision"] == pytest.approx(theirs["precision"], rel=1e-6)
    assert ours["recall"] == pytest.approx(theirs["recall"], rel=1e-6)


def test_fid_features_offline_or_without_torch_fidelity_say_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    monkeypatch.setenv("GANLIB_OFFLINE", "1")
    with pytest.raises(GanlibError, match=r"FID Inception weights are not in .*downloads are off.*download https://"):
        evaluation.feature_extractor("fid", "digits", 16)
    monkeypatch.setenv("GANLIB_OFFLINE", "0")

    def no_network(url, dst, **kw):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(GanlibError, match=r"could not download .*name resolution.*download https://\S+ into "):
        evaluation.feature_extractor("fid", "digits", 16)
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", None)
    with pytest.raises(GanlibError, match=r'needs torch-fidelity: pip install "ganlib\[fid\]"'):
        evaluation.feature_extractor("fid", "digits", 16)


def test_fid_features_feed_the_papers_inception_uint8_rgb(monkeypatch, tmp_path):
    """With stand-in weights in the hub cache (the real ones are a download): `--features fid` gives the
    network's 2048-d features of the images as uint8 RGB, grey repeated to R = G = B."""
    from torch_fidelity import feature_extractor_inceptionv3 as tfi

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("GANLIB_OFFLINE", "1")  # the cached file must be found, not downloaded
    torch.manual_seed(0)
    with monkeypatch.context() as m:  # build the network without its weights, to save random ones
        m.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    cached = tmp_path / "hub" / "checkpoints" / Path(tfi.URL_INCEPTION_V3).name
    cached.parent.mkdir(parents=True)
    torch.save(net.state_dict(), cached)
    extractor = evaluation.feature_extractor("fid", "digits", 16)
    grey = torch.rand(2, 1, 16, 16) * 2 - 1
    f = extractor(grey)
    assert f.shape == (2, 2048) and f.dtype == torch.float32
    assert torch.equal(f, extractor(grey.repeat(1, 3, 1, 1)))
    direct = net.eval()(data.to_uint8(grey).repeat(1, 3, 1, 1))[0]
    assert torch.allclose(f, direct, rtol=1e-5, atol=1e-6)
    with pytest.raises(GanlibError, match="1 or 3"):
        extractor(torch.zeros(2, 2, 16, 16))


def test_shape_geometry_recovers_the_known_factors():
    shapes = data.load("shapes", 16, split="test")
    x, _ = shapes.batch(torch.arange(600))
    f = {k: v[:600] for k, v in shapes.factors.items()}
    g = metrics.shape_geometry(x)

    def corr(a, b):
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / (a.norm() * b.norm()))

    assert corr(g["x"], f["x"]) > 0.99 and corr(g["y"], f["y"]) > 0.99
    for kind in range(3):  # size is the radius up to a constant that depends on the kind of shape
        assert corr(g["size"][f["shape"] == kind], f["size"][f["shape"] == kind]) > 0.95
    backgrounds = torch.tensor(list(SHAPE_BACKGROUNDS.values())) * 2 - 1  # [3, 3] in [-1, 1]
    assert torch.allclose(g["background"], backgrounds[f["background"]], atol=0.02)
    colours = torch.tensor(list(SHAPE_COLOURS.values())) * 2 - 1  # [6, 3]
    nearest = torch.cdist(g["colour"], colours).argmin(dim=1)  # edges blend with the background, so: nearest
    assert (nearest == f["colour"]).float().mean() > 0.95
    empty = metrics.shape_geometry(torch.full((1, 3, 16, 16), -0.5))
    assert torch.isnan(empty["x"]).all() and torch.isnan(empty["colour"]).all() and empty["size"].item() == 0
    assert (g["parts"] == 1).float().mean() > 0.98 and empty["parts"].item() == 0
    # two real shapes blended: far enough apart, they are two blobs
    far = ((f["x"][:, None] - f["x"][None]).abs() > 0.45).nonzero()[0]
    blend = (x[far[0]] + x[far[1]]) / 2
    assert metrics.shape_geometry(blend[None])["parts"].item() == 2


# ----------------------------------------------------------------------------------------------------------
# The shapes judge


@pytest.fixture(scope="module")
def shapes_judge():
    return evaluation.judge_for("shapes", 32)


@pytest.fixture(scope="module")
def shapes_test():
    d = data.load("shapes", 32, split="test")
    return d.batch(torch.arange(1000))[0], d.factors


@pytest.mark.parametrize("name", ["digits", "shapes"])
def test_shipped_judge_matches_the_dataset(name):
    """The judges of digits (16x16) and shapes come with ganlib, so that every machine scores with the same
    weights (trained ones depend on the thread count); the recorded held-out accuracy and the real images'
    feature statistics must still be what the shipped classifier gives on today's dataset."""
    judge = evaluation.JUDGES.get(name, evaluation.ImageJudge)(name, 16)
    shipped = evaluation.PRETRAINED / judge.file_name()
    assert shipped.is_file() and shipped.stat().st_size < 1_000_000, (
        f"{shipped.name} is not shipped: after bumping CLASSIFIER_VERSION, run evaluation.ship_judge({name!r}, 16)")
    state = torch.load(shipped, map_location="cpu", weights_only=True)
    assert state["test_accuracy"] == judge.test_accuracy  # `judge_for` loads the shipped file first
    assert all(torch.equal(p, state["model"][k]) for k, p in judge.model.state_dict().items())
    test = judge.labelled(judge.resolution, "test")
    _, probs = evaluation.classify(judge.model, test.batch(torch.arange(len(test)))[0])
    assert float((probs.argmax(1) == test.labels).float().mean()) == pytest.approx(judge.test_accuracy, abs=1e-6)
    ref = judge.reference(judge.resolution)
    feats, _ = evaluation.classify(judge.model, ref.batch(torch.arange(len(ref)))[0])
    mu, cov = metrics.gaussian_stats(feats)
    assert np.allclose(mu, judge.ref_mu, atol=1e-4) and np.allclose(cov, judge.ref_cov, atol=1e-3)


def test_shapes_judge_real_data_and_what_is_not_a_shape(shapes_judge, shapes_test):
    x, factors = shapes_test
    assert shapes_judge.test_accuracy > 0.9  # 19 classes, "no shape" included
    real = shapes_judge.score(x)
    assert real["recognisable"] > 0.97 and real["classes"] == 18 and real["n"] == 1000
    noise = shapes_judge.score(torch.rand(500, 3, 32, 32) * 2 - 1)
    assert noise["recognisable"] < 0.05 and noise["fd"] > 100 * real["fd"]
    grey = shapes_judge.score(x.mean(1, keepdim=True).expand(-1, 3, -1, -1))
    assert grey["colour_ok"] < 0.05 and grey["recognisable"] < 0.05
    blended = shapes_judge.score((x + x.roll(1, 0)) / 2)  # two shapes at half strength each
    assert blended["recognisable"] < 0.2
    circles = shapes_judge.score(x[factors["shape"][:1000] == 0])
    assert 6 <= circles["classes"] <= 7 and circles["fd"] > 3 * real["fd"]  # one shape of 3: 6 pairs, far off


def test_read_factors_reads_real_shapes_back(shapes_judge, shapes_test):
    """Chapter 03's factors read off real images are the ones they were drawn with: shape and colour from the
    judge (`ShapesJudge.shape_colour` sums the pairs' probabilities), background and position from
    `shape_geometry`."""
    x, factors = shapes_test
    n = len(x)
    read = evaluation.read_factors(x, shapes_judge)
    assert set(read) == set(evaluation.FACTORS)
    assert (read["shape"] == factors["shape"][:n]).float().mean() > 0.9  # the judge's held-out accuracy: 0.935
    assert (read["colour"] == factors["colour"][:n]).float().mean() > 0.98
    assert torch.equal(read["background"], factors["background"][:n])
    drawn = torch.stack([factors["x"][:n], factors["y"][:n]], dim=1)
    assert (read["position"] - drawn).norm(dim=1).mean() < 0.01  # centroids of 32x32 pixels vs the drawn centres
    geometry = metrics.shape_geometry(x)
    assert torch.equal(read["position"], torch.stack([geometry["x"], geometry["y"]], dim=1))
    _, probs = evaluation.classify(shapes_judge.model, shapes_judge.prepare(x))
    shape_p, colour_p = shapes_judge.shape_colour(probs)
    assert shape_p.shape == (n, 3) and colour_p.shape == (n, 6)
    assert torch.allclose(shape_p.sum(1) + probs[:, -1], torch.ones(n)) and torch.allclose(shape_p.sum(1),
                                                                                          colour_p.sum(1))


def test_shapes_judge_serves_every_resolution(shapes_judge):
    assert evaluation.judge_for("shapes", 16) is shapes_judge and evaluation.judge_for("shapes", 64) is shapes_judge
    by_res = {r: shapes_judge.real_score(500, r) for r in (4, 16, 64)}
    assert by_res[16]["recognisable"] > 0.97 and by_res[64]["recognisable"] > 0.97
    assert by_res[4]["recognisable"] < 0.3  # 4x4 shapes, blown up, are blocks, not shapes
    test = data.load("shapes", 16, split="test")
    x16 = test.batch(torch.arange(200))[0]
    assert evaluation.classifier_metrics(x16, "shapes")["recognisable"] > 0.95
    labels = test.labels[:200]
    assert shapes_judge.score(x16, labels)["label_accuracy"] > 0.9
    assert shapes_judge.score(x16, (labels + 1) % 3)["label_accuracy"] < 0.05
    with pytest.raises(GanlibError, match="RGB images"):
        shapes_judge.score(torch.zeros(2, 1, 16, 16))


def test_shapes_judge_is_not_fooled_by_an_untrained_generator(shapes_judge):
    from ganlib.models import pggan

    torch.manual_seed(0)
    G = pggan.Generator(32, 3, z_dim=32, fmap_base=256, fmap_max=64)
    with torch.no_grad():
        for r in (4, 8, 32):
            assert shapes_judge.score(G(torch.randn(200, 32), resolution=r))["recognisable"] < 0.15, r  # real: 0.98


def test_evaluate_table_columns_stay_apart_for_any_width():
    """Cells wider than any fixed column (a PGGAN's FD of 35609.98, a KID of -0.001319±0.0047) stay separated,
    right-aligned under their column's name, and the header line comes first unchanged."""
    from gancourse.evaluation.evaluate import _table

    rows = [("samples", {"fd": 35609.98, "kid": 5.246e7, "kid_std": 5.8e4, "modes": 8}),
            ("real data", {"fd": 0.003, "kid": -0.001319, "kid_std": 0.0047, "modes": 123456789012345678})]
    lines = _table("the header", rows, ["modes", "fd", "kid"]).splitlines()
    assert lines[0] == "the header"
    assert lines[2].split() == ["samples", "8", "35609.980", "5.246e+07±5.8e+04"]
    assert lines[3].split() == ["real", "data", "123456789012345678", "0.003", "-0.001319±0.0047"]
    ends = [m.end() for m in re.finditer(r"\S+", lines[1])]
    for line in lines[2:]:
        assert [m.end() for m in re.finditer(r"\S+", line)][-3:] == ends

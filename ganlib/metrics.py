"""Measuring a generator without downloads.

- 2-D toys: `mode_coverage` (the VEEGAN/PacGAN protocol: a sample is *high quality* when it lies within
  3 std of its nearest mode; a mode is *covered* when at least one high-quality sample is nearest to it).
- Any features [N, D] of real and generated samples: `frechet_distance` (FID's formula), `kid` (the
  unbiased squared MMD with the cubic kernel of Binkowski et al. 2018, mean and std over subsets),
  `precision_recall` (k-nearest-neighbour manifolds, Kynkaanniemi et al. 2019), `nearest_neighbour_distances`
  (does a generator copy its training set?); `feature_metrics` computes them together.
- Features come from a `FeatureExtractor`: `ClassifierFeatures`, a small CNN classifier of a labelled offline
  dataset, shipped with ganlib for digits (16x16) and shapes (so every machine scores with the same weights)
  and otherwise trained deterministically in seconds and cached; `FIDInceptionFeatures`, the 2015 TensorFlow
  Inception of the FID papers through torch-fidelity (the optional extra ``ganlib[fid]``; weights downloaded
  once): with the papers' protocol, numbers comparable with published FID/KID/precision-recall; or
  `InceptionFeatures`, torchvision's ImageNet Inception-v3 (downloaded once, no extra package; other weights
  and resize, so not comparable with papers). Values on one extractor's features are not comparable with
  another's.
- `classifier_metrics` / `ImageJudge.score`: the classifier's Fréchet distance to the real training images,
  the number of classes covered and the mean classifier confidence.
- `shapes`: `ShapesJudge`, a classifier of the joint (shape, colour) class plus "no shape", which also reports
  the share of images with a recognisable shape in a plausible colour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import data as datasets
from .errors import GanlibError
from .files import atomic_save, cache_dir, damage

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
    torch-fidelity and clean-fid. Deterministic given `seed`. Papers report it x 10^3 on Inception features;
    on other features its scale is theirs (the kernel's 1/D assumes features of order 1)."""
    a, b = _as_double(features_a), _as_double(features_b)
    assert a.shape[1] == b.shape[1], f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}"
    m = min(subset_size, a.shape[0], b.shape[0])
    g = torch.Generator().manual_seed(seed)
    values = torch.tensor([mmd2_unbiased(a[torch.randperm(a.shape[0], generator=g)[:m]],
                                         b[torch.randperm(b.shape[0], generator=g)[:m]]) for _ in range(subsets)],
                          dtype=torch.float64)
    return float(values.mean()), float(values.std()) if subsets > 1 else 0.0


# ----------------------------------------------------------------------------------------------------------
# Inception Score


def inception_score(probs: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """The Inception Score (Salimans et al. 2016) from class probabilities [N, K]: exp(E_x KL(p(y|x) || p(y))),
    with p(y) the mean of p(y|x) over the split; (mean, std) over `splits` equal parts of the samples, as in
    the authors' code (which uses Inception-v3's ImageNet probabilities, 50,000 samples and 10 splits). It
    lies between 1 (every sample gets the same prediction) and K (confident, equally many per class); it never
    looks at real data."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    assert p.ndim == 2 and p.shape[0] >= splits, f"probs must be [N >= {splits}, K], got {list(p.shape)}"
    scores = []
    for part in p.chunk(splits):
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


# ----------------------------------------------------------------------------------------------------------
# A small classifier as feature extractor

CLASSIFIER_VERSION = 2  # bump when the architecture or its training changes (invalidates the cache)
PRETRAINED = Path(__file__).resolve().parent / "pretrained"  # shipped classifiers (digits at 16x16, shapes),
# written by `ship_judge`: trained weights depend on the machine's thread count, so tests and benchmarks that
# score with a judge need the same file everywhere.


class Classifier(nn.Module):
    """A small CNN: images [N, C, R, R] in [-1, 1] -> logits [N, K]; `features` is its 128-d penultimate layer."""

    def __init__(self, img_channels: int, num_classes: int, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(img_channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(2 * width * 16, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # [N, 128]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))  # [N, K]


def train_classifier(train: datasets.ImageData, seed: int = 0, device: torch.device | str = "cpu",
                     images_seen: int = 20_000) -> Classifier:
    """Train a `Classifier` on labelled images, deterministically given the device. It sees about
    `images_seen` images (at least 2 and at most 30 epochs); random shifts of ±1 pixel per batch make it
    less brittle on generated images."""
    if train.labels is None:
        raise GanlibError(f"{train.name} has no labels, so no classifier can be trained on it.")
    from tqdm.auto import tqdm

    epochs = int(min(30, max(2, images_seen // len(train))))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        model = Classifier(train.channels, train.num_classes).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        n = len(train)
        for _ in tqdm(range(epochs), desc=f"training a classifier on {train.name}", unit="epoch", leave=False):
            perm = torch.randperm(n, generator=g)
            for i in range(0, n, 64):
                x, y = train.batch(perm[i: i + 64])
                dx, dy = torch.randint(-1, 2, (2,), generator=g).tolist()
                x = torch.roll(x, shifts=(dx, dy), dims=(2, 3)).to(device)
                loss = F.cross_entropy(model(x), y.to(device))
                opt.zero_grad()
                loss.backward()
                opt.step()
    return model.cpu().eval().requires_grad_(False)


@torch.no_grad()
def classify(model: Classifier, images: torch.Tensor, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [N, 128], class probabilities [N, K]) for images [N, C, R, R] in [-1, 1], on the CPU."""
    feats, probs = [], []
    for x in images.split(batch):
        f = model.features(x.float().cpu())
        feats.append(f)
        probs.append(model.head(f).softmax(dim=1))
    return torch.cat(feats), torch.cat(probs)


class ImageJudge:
    """Everything needed to score images of one labelled dataset at one resolution: the classifier, its
    held-out accuracy and the feature statistics of the real training images. Built once, then cached."""

    def __init__(self, data_name: str, resolution: int, cached: bool = True):
        """`cached`: load the classifier shipped with ganlib (`PRETRAINED`) or, failing that, the one in the
        cache folder (`files.cache_dir`), else train it and cache it; False trains it afresh and writes nothing."""
        self.data_name = data_name
        train = self.labelled(resolution, "train")
        if train.kind != "images" or train.labels is None:
            raise GanlibError(f"image metrics need a labelled image dataset; {data_name} is not one (for "
                              f"unlabelled images use the FID Inception features: --features fid).")
        self.resolution, self.channels = resolution, train.channels
        self.num_classes = train.num_classes
        self.model = Classifier(train.channels, train.num_classes)
        path = cache_dir() / self.file_name()
        for candidate in (PRETRAINED / path.name, path) if cached else ():
            if damage(candidate) is not None:
                continue  # absent or damaged: the next candidate, else trained afresh
            try:
                state = torch.load(candidate, map_location="cpu", weights_only=True)
            except Exception:
                continue  # not a judge's file
            self.model.load_state_dict(state["model"])
            self.model.eval().requires_grad_(False)
            self.test_accuracy = state["test_accuracy"]
            self.ref_mu, self.ref_cov = state["ref_mu"].numpy(), state["ref_cov"].numpy()
            return
        self.model = train_classifier(train, device="cuda" if torch.cuda.is_available() else "cpu",
                                      images_seen=self.images_seen)
        test = self.labelled(resolution, "test")
        _, probs = classify(self.model, test.batch(torch.arange(len(test)))[0])
        self.test_accuracy = float((probs.argmax(1) == test.labels).float().mean())
        ref = self.reference(resolution)
        feats, _ = classify(self.model, ref.batch(torch.arange(len(ref)))[0])
        self.ref_mu, self.ref_cov = gaussian_stats(feats)
        if cached:
            self.save(path)

    def save(self, path: str | Path) -> None:
        """Write the classifier, its held-out accuracy and the real images' feature statistics (atomically)."""
        atomic_save({"model": self.model.state_dict(), "test_accuracy": self.test_accuracy,
                     "ref_mu": torch.from_numpy(self.ref_mu), "ref_cov": torch.from_numpy(self.ref_cov)}, path)

    def file_name(self) -> str:
        """The classifier's file name, in the cache folder or shipped in `PRETRAINED`."""
        return f"classifier-{self.cache_name}-{self.resolution}-v{CLASSIFIER_VERSION}.pt"

    cache_name = property(lambda self: self.data_name)  # names the cached classifier file
    images_seen = 20_000  # the classifier's training budget (see `train_classifier`)

    def labelled(self, resolution: int, split: str):
        """The images and the labels the classifier learns (the dataset's own labels)."""
        return datasets.load(self.data_name, resolution=resolution, split=split)

    def reference(self, resolution: int):
        """The real images whose feature statistics generated images are compared with (the training split)."""
        return self.labelled(resolution, "train")

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """The images as the classifier takes them; a GanlibError if they are not of its dataset and size."""
        if images.ndim != 4 or images.shape[1] != self.channels or images.shape[-1] != self.resolution:
            raise GanlibError(f"these metrics are for {self.data_name} at {self.channels}x{self.resolution}x"
                              f"{self.resolution}, got images of shape {list(images.shape[1:])}.")
        return images

    def score(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        """Metrics for generated images [N, C, R, R] in [-1, 1] (and the labels they were asked for).

        Returns ``fd`` (Fréchet distance of classifier features to the real training images), ``classes``
        (classes covered: predicted for at least a fifth of their fair share N/K of the samples),
        ``confidence`` (mean top class probability) and, with `labels`, ``label_accuracy`` (share classified
        as the requested class).
        """
        feats, probs = classify(self.model, self.prepare(images))
        counts = torch.bincount(probs.argmax(1), minlength=self.num_classes)
        fair_share = len(images) / self.num_classes
        result = {"fd": frechet_distance_from_stats(*gaussian_stats(feats), self.ref_mu, self.ref_cov),
                  "classes": int((counts >= max(1.0, 0.2 * fair_share)).sum()),
                  "confidence": float(probs.max(1).values.mean()), "n": len(images)}
        if labels is not None:
            result["label_accuracy"] = float((probs.argmax(1) == labels.cpu()).float().mean())
        return result


class ShapesJudge(ImageJudge):
    """The judge of `shapes`. Its classifier learns 19 classes: the 3 x 6 (shape, colour) pairs, so one network
    tells both what was drawn and in which colour, and a class "no shape" trained on images that are not a
    clean shape (`not_shapes`: noise, random colour blocks, two shapes blended, a shape seen at 4x4 and blown up, the
    background alone, a shape in grey), so that such images are not forced into a shape class.

    It looks at every image at 16x16 (`RESOLUTION`): larger images are box-downsampled, smaller ones
    nearest-upsampled (so the blocky output of a progressive GAN's early stages is judged as what it is).
    One classifier thus serves every resolution, and figures of different resolutions are comparable.

    `score` reports ``shape_ok`` (share of images whose most likely shape, colours summed out, has
    probability >= `threshold`, i.e. beats "no shape" and the other shapes together), ``colour_ok`` (share of
    images painted in the dataset's colours: at least `palette_share` of the pixels within `colour_tolerance`
    of one of the 6 shape and 3 background colours, and the most likely colour, shapes summed out, at
    >= `threshold`), and ``recognisable`` (both at once: a recognisable shape in a plausible colour), besides
    ``fd``, ``classes`` (the (shape, colour) pairs covered, of 18) and ``confidence``. Real images at 16x16
    and above score about 0.98; noise, grey shapes, two shapes blended and untrained generators near 0.
    """

    RESOLUTION = 16
    threshold = 0.5  # the probability the most likely shape (colour) needs: even odds against everything else
    colour_tolerance = 0.25  # RGB distance (images in [-1, 1]) within which a pixel has a dataset colour
    palette_share = 0.8  # share of pixels that must (real images at 16x16: at least 0.88)
    cache_name = "shapes-joint"
    images_seen = 60_000  # rotated shapes need more steps than digits
    pairs = len(datasets.SHAPE_NAMES) * len(datasets.SHAPE_COLOURS)  # 18; class 18 is "no shape"

    def __init__(self, data_name: str = "shapes", resolution: int = RESOLUTION, cached: bool = True):
        super().__init__("shapes", self.RESOLUTION, cached)

    def labelled(self, resolution: int, split: str) -> datasets.ImageData:
        d = datasets.load("shapes", resolution=resolution, split=split)
        joint = d.factors["shape"] * len(datasets.SHAPE_COLOURS) + d.factors["colour"]  # [N]
        negatives = self.not_shapes(d.images, seed=len(d))
        names = [f"{c} {s}" for s in datasets.SHAPE_NAMES for c in datasets.SHAPE_COLOURS] + ["no shape"]
        return datasets.ImageData("shapes", torch.cat([d.images, negatives]),
                                  torch.cat([joint, torch.full((len(negatives),), self.pairs)]), len(names), names)

    def reference(self, resolution: int) -> datasets.ImageData:
        return datasets.load("shapes", resolution=resolution, split="train")

    @staticmethod
    def not_shapes(images: torch.Tensor, seed: int) -> torch.Tensor:
        """Images that are not a clean shape, uint8 [6 * N/20, 3, R, R], six kinds equally: uniform noise,
        blocky noise (random 2x2, 4x4 or 8x8 colour blocks), two real shapes blended, a real shape at 4x4 blown
        up, the background alone, a real shape in grey."""
        g = torch.Generator().manual_seed(seed)
        k = len(images) // 20
        r = images.shape[-1]
        pick = lambda: images[torch.randint(len(images), (k,), generator=g)].float()  # noqa: E731  [k, 3, R, R]
        noise = lambda side: torch.rand(k, 3, side, side, generator=g) * 255  # noqa: E731
        blocks = torch.cat([F.interpolate(noise(s), size=r, mode="nearest") for s in (2, 4, 8)])
        blocks = blocks[torch.randperm(len(blocks), generator=g)[:k]]
        blend = (pick() + pick()) / 2
        blocky = F.interpolate(F.avg_pool2d(pick(), r // 4), scale_factor=r // 4, mode="nearest")
        empty = pick()[:, :, :1, :1].expand(-1, -1, r, r)  # a corner's colour everywhere: the background
        grey = pick().mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
        return torch.cat([noise(r), blocks, blend, blocky, empty, grey]).round().to(torch.uint8)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, R, R] -> [N, 3, 16, 16], clamped to [-1, 1]: box-downsampled or nearest-upsampled."""
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] != images.shape[-2]:
            raise GanlibError(f"the shapes judge scores RGB images [N, 3, R, R], got {list(images.shape)}.")
        r = images.shape[-1]
        images = images.float().clamp(-1, 1)  # as they are shown and saved
        if r > self.RESOLUTION:
            return F.avg_pool2d(images, r // self.RESOLUTION)
        return F.interpolate(images, scale_factor=self.RESOLUTION // r, mode="nearest")

    def score(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        """The figures above for images [N, 3, R, R] in [-1, 1], any R; `labels`, if given, are shape classes
        (what a conditional model asks for), and ``label_accuracy`` is the share whose most likely shape is
        the requested one."""
        x = self.prepare(images)  # [N, 3, 16, 16]
        feats, probs = classify(self.model, x)
        pairs = probs[:, : self.pairs].reshape(len(images), len(datasets.SHAPE_NAMES), -1)  # [N, 3, 6]
        shape_p, colour_p = pairs.sum(2), pairs.sum(1)  # [N, 3], [N, 6]
        shape_ok = shape_p.max(1).values >= self.threshold  # [N]
        legal = torch.tensor([*datasets.SHAPE_COLOURS.values(), *datasets.SHAPE_BACKGROUNDS.values()]) * 2 - 1
        dist = (x.permute(0, 2, 3, 1)[..., None, :] - legal).norm(dim=-1).min(dim=-1).values  # [N, 16, 16]
        in_palette = (dist < self.colour_tolerance).float().mean(dim=(1, 2)) >= self.palette_share  # [N]
        colour_ok = in_palette & (colour_p.max(1).values >= self.threshold)
        counts = torch.bincount(probs.argmax(1), minlength=self.pairs + 1)[: self.pairs]
        result = {"fd": frechet_distance_from_stats(*gaussian_stats(feats), self.ref_mu, self.ref_cov),
                  "classes": int((counts >= max(1.0, 0.2 * len(images) / self.pairs)).sum()),
                  "confidence": float(probs.max(1).values.mean()), "n": len(images),
                  "shape_ok": float(shape_ok.float().mean()), "colour_ok": float(colour_ok.float().mean()),
                  "recognisable": float((shape_ok & colour_ok).float().mean())}
        if labels is not None:
            result["label_accuracy"] = float((shape_p.argmax(1) == labels.cpu()).float().mean())
        return result

    def real_score(self, n: int = 1000, resolution: int = RESOLUTION) -> dict:
        """The same figures for `n` real held-out images at `resolution`: what a perfect generator gets."""
        test = datasets.load("shapes", resolution=resolution, split="test")
        return self.score(test.batch(torch.arange(min(n, len(test))))[0])


JUDGES = {"shapes": ShapesJudge}  # datasets whose judge is not the plain one

_JUDGES: dict[tuple[str, int], ImageJudge] = {}


def judge_for(data_name: str, resolution: int) -> ImageJudge:
    """The (cached) `ImageJudge` for a labelled dataset at a resolution."""
    key = (data_name, resolution if data_name not in JUDGES else 0)  # the shapes judge serves all resolutions
    if key not in _JUDGES:
        _JUDGES[key] = JUDGES.get(data_name, ImageJudge)(data_name, resolution)
    return _JUDGES[key]


def ship_judge(data_name: str, resolution: int) -> Path:
    """Train `data_name`'s judge afresh and write it into `PRETRAINED`, to be shipped with ganlib. For
    maintainers: after changing the classifier, its training or the dataset, bump CLASSIFIER_VERSION and run
    ``OMP_NUM_THREADS=2 python -c "from ganlib import metrics; metrics.ship_judge('shapes', 16)"`` and the same
    with ``ship_judge('digits', 16)`` (the trained weights depend a little on the number of threads; the
    shipped ones come from 2). `tests/test_metrics.py` checks that every shipped judge still reproduces its
    recorded held-out accuracy and feature statistics on today's data."""
    judge = JUDGES.get(data_name, ImageJudge)(data_name, resolution, cached=False)
    path = PRETRAINED / judge.file_name()
    judge.save(path)
    return path


def classifier_metrics(images: torch.Tensor, data_name: str = "digits", labels: torch.Tensor | None = None) -> dict:
    """`ImageJudge.score` for images of `data_name` at their own resolution."""
    return judge_for(data_name, images.shape[-1]).score(images, labels)


# ----------------------------------------------------------------------------------------------------------
# Feature extractors: one interface, an offline classifier and Inception-v3


class FeatureExtractor:
    """Maps images [N, C, R, R] in [-1, 1] to features [N, dim] (float32, CPU). `name` says which features
    they are, for reports: numbers on different extractors' features are on different scales."""

    name: str
    dim: int

    def __call__(self, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """Features [N, dim] of images [N, C, R, R], `batch` at a time, with a progress bar beyond one batch."""
        from tqdm.auto import tqdm

        with tqdm(total=len(images), desc="features", unit="img", leave=False, disable=len(images) <= batch) as bar:
            out = []
            for x in images.split(batch):
                out.append(self.features(x))
                bar.update(len(x))
        return torch.cat(out)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class ClassifierFeatures(FeatureExtractor):
    """The 128-d penultimate layer of the course's classifier for a labelled offline dataset (`ImageJudge`):
    no download, shipped or trained in seconds, and it knows what the dataset's classes look like."""

    def __init__(self, data_name: str, resolution: int):
        self.judge = judge_for(data_name, resolution)
        self.dim = 128
        self.name = (f"{data_name} classifier, {self.dim}-d penultimate layer (ganlib; held-out accuracy "
                     f"{self.judge.test_accuracy:.3f})")

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return classify(self.judge.model, self.judge.prepare(images))[0]


def _inception_state_dict() -> dict:
    """torchvision's ImageNet Inception-v3 weights: from the torch hub cache, else downloaded once."""
    from pathlib import Path

    from torchvision.models import Inception_V3_Weights

    weights = Inception_V3_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file() and not datasets.downloads_allowed():
        raise GanlibError(f"Inception-v3 weights are not in {cached.parent} and downloads are off "
                          f"(GANLIB_OFFLINE=1): run once with network, or use the offline classifier features.")
    try:
        return weights.get_state_dict(progress=False)
    except Exception as e:  # no network, blocked host: one line, not a stack trace
        reason = str(e).strip().splitlines()[0][:100] if str(e).strip() else type(e).__name__
        raise GanlibError(f"could not download the Inception-v3 weights ({reason}): connect to the network "
                          f"once, or use the offline classifier features (--features classifier).") from None


class InceptionFeatures(FeatureExtractor):
    """The 2048-d pool features of torchvision's ImageNet Inception-v3. Images are resized to 299x299 (torch's
    bilinear) and grey images repeated to RGB. These are other weights than the 2015 TensorFlow graph of the
    FID papers and another resize, so values are NOT comparable with papers' FIDs (use
    `FIDInceptionFeatures` for that); it needs no extra package."""

    def __init__(self, device: torch.device | str | None = None):
        from torchvision.models import Inception3

        state = _inception_state_dict()
        # transform_input=False: these weights expect inputs in [-1, 1], which is what our images are
        net = Inception3(num_classes=1000, aux_logits=True, transform_input=False, init_weights=False)
        net.load_state_dict(state)
        net.fc = nn.Identity()  # the 2048-d average-pooled features instead of the ImageNet logits
        net.AuxLogits = None
        net.aux_logits = False
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.net = net.to(self.device).eval().requires_grad_(False)
        self.dim = 2048
        self.name = ("torchvision Inception-v3 (ImageNet), 2048-d pool features, bilinear resize to 299x299: not "
                     "comparable with papers' FID (--features fid is)")

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise GanlibError(f"Inception features need images [N, 1 or 3, H, W], got {list(images.shape)}.")
        x = images.float().to(self.device).expand(-1, 3, -1, -1)  # grey -> RGB
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)  # [N, 3, 299, 299]
        return self.net(x).float().cpu()  # [N, 2048]


FID_INSTALL = 'pip install "ganlib[fid]"'  # the optional extra that FIDInceptionFeatures needs (torch-fidelity)
# The protocol of the papers' FID, KID and precision/recall (StyleGAN2-ADA's fid50k_full, kid50k_full, pr50k3_full)
PAPER_SAMPLES = 50_000  # generated images, against every image of the training set


def _fid_weights() -> Path:
    """The FID papers' Inception weights (TensorFlow's 2015 graph, converted by torch-fidelity): from the torch
    hub cache, else downloaded there once (95 MB)."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(URL_INCEPTION_V3).name
    if path.is_file():
        return path
    if not datasets.downloads_allowed():
        raise GanlibError(f"the FID Inception weights are not in {path.parent} and downloads are off "
                          f"(GANLIB_OFFLINE=1): run once with network, or download {URL_INCEPTION_V3} into "
                          f"that folder.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(URL_INCEPTION_V3, str(path), progress=False)  # via a temporary file
    except Exception as e:  # no network, blocked host: one line, not a stack trace
        reason = str(e).strip().splitlines()[0][:100] if str(e).strip() else type(e).__name__
        raise GanlibError(f"could not download the FID Inception weights ({reason}): on a machine with network, "
                          f"download {URL_INCEPTION_V3} into {path.parent}.") from None
    return path


class FIDInceptionFeatures(FeatureExtractor):
    """The 2048-d pool features of the Inception-v3 that FID, KID and precision/recall in papers use: the 2015
    TensorFlow graph of Heusel et al., through torch-fidelity, which reproduces it and TensorFlow 1.x's
    bilinear resize to 299x299 (the same features as pytorch-fid and clean-fid's legacy mode). Needs the
    optional extra (`FID_INSTALL`) and the weights (downloaded once). Numbers on these features are
    comparable with published ones when computed with the papers' protocol (`PAPER_SAMPLES`)."""

    def __init__(self, device: torch.device | str | None = None):
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError:
            raise GanlibError(f"--features fid needs torch-fidelity: {FID_INSTALL} (or pip install "
                              f"torch-fidelity), or use --features classifier.") from None
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                          feature_extractor_weights_path=str(_fid_weights()))
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.net = net.to(self.device).eval()
        self.dim = 2048
        self.name = ("the FID Inception-v3 (TensorFlow 2015 graph, torch-fidelity), 2048-d pool features, "
                     "TensorFlow-style resize to 299x299")

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise GanlibError(f"FID features need images [N, 1 or 3, H, W], got {list(images.shape)}.")
        x = datasets.to_uint8(images).expand(-1, 3, -1, -1).to(self.device)  # [N, 3, H, W] uint8, grey -> RGB
        return self.net(x)[0].float().cpu()  # [N, 2048]


FEATURES = ("classifier", "fid", "inception")


def feature_extractor(name: str, data_name: str, resolution: int) -> FeatureExtractor:
    """``classifier`` (offline, labelled datasets), ``fid`` (the papers' Inception, through torch-fidelity) or
    ``inception`` (torchvision's ImageNet Inception-v3: not comparable with papers)."""
    if name == "classifier":
        return ClassifierFeatures(data_name, resolution)
    if name == "fid":
        return FIDInceptionFeatures()
    if name == "inception":
        return InceptionFeatures()
    raise GanlibError(f"unknown features {name!r}: use one of {', '.join(FEATURES)}.")


# ----------------------------------------------------------------------------------------------------------
# Measuring a shape's geometry from its pixels


def shape_geometry(images: torch.Tensor, threshold: float = 0.9, min_share: float = 0.03) -> dict[str, torch.Tensor]:
    """Where and how big the shape in each image of `shapes` (or a generator imitating it) is, measured from
    the pixels: the background colour is the median of the image's border; shape pixels differ from it by more
    than `threshold` (summed over RGB, images in [-1, 1]; every shape colour of the dataset differs from every
    background by about 2); the shape is the largest 4-connected blob of them (a generator's stray pixels
    are ignored).

    Returns [N] tensors: ``x`` and ``y`` (the shape's centroid, as fractions of the image side, like the
    dataset's factors), ``size`` (the square root of the shape's share of the image: proportional to the
    dataset's radius for each kind of shape), ``colour`` [N, 3] (the shape's mean RGB), ``background``
    [N, 3] (the border's median RGB) and ``parts`` (blobs covering at least `min_share` of the image: 1 for a
    real image, 2 for two shapes side by side). An image with no shape pixel gets size 0, parts 0 and NaN
    position and colour.
    """
    from scipy import ndimage

    assert images.ndim == 4 and images.shape[1] == 3, f"expected RGB images [N, 3, R, R], got {list(images.shape)}"
    x = images.float().cpu()
    r = x.shape[-1]
    border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, 1:-1, 0], x[:, :, 1:-1, -1]], dim=2)  # [N, 3, 4R - 4]
    background = border.median(dim=2).values  # [N, 3]
    candidates = ((x - background[:, :, None, None]).abs().sum(dim=1) > threshold).numpy()  # [N, R, R]
    masks, parts = [], []
    for m in candidates:
        blobs, count = ndimage.label(m)
        areas = np.bincount(blobs.ravel(), minlength=count + 1)[1:]  # [count]
        parts.append(int((areas >= min_share * r * r).sum()))
        masks.append(blobs == areas.argmax() + 1 if count else np.zeros_like(m))
    mask = torch.from_numpy(np.stack(masks)).float()  # [N, R, R], the largest blob
    area = mask.flatten(1).sum(1)  # [N]
    coords = (torch.arange(r, dtype=torch.float32) + 0.5) / r  # pixel centres as fractions of the side
    cx = (mask * coords[None, None, :]).flatten(1).sum(1) / area
    cy = (mask * coords[None, :, None]).flatten(1).sum(1) / area
    colour = (x * mask[:, None]).flatten(2).sum(2) / area[:, None]  # [N, 3]
    return {"x": cx, "y": cy, "size": (area / r**2).sqrt(), "colour": colour, "background": background,
            "parts": torch.tensor(parts)}


# ----------------------------------------------------------------------------------------------------------
# The `evaluate` command


def read_samples(path) -> dict[str, np.ndarray]:
    """The arrays of a samples file written by `python -m ganlib sample`, with one-line errors."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise GanlibError(f"no samples file at {str(path)!r}: write one with `python -m ganlib sample`.")
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception:
        raise GanlibError(f"{str(path)!r} is not a readable .npz file: write it with "
                          f"`python -m ganlib sample`.") from None
    if "points" not in arrays and "images" not in arrays:
        raise GanlibError(f"{path.name} has neither 'images' nor 'points': write it with `python -m ganlib sample`.")
    return arrays


def _table(header: str, rows: list[tuple[str, dict]], cols: list[str]) -> str:
    def cell(r: dict, c: str) -> str:
        if c == "kid":  # with its std over subsets
            return f"{r['kid']:.4g}±{r['kid_std']:.2g}"
        return f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c])

    names = {"label_accuracy": "label acc", "nn": "nn dist"}
    width = max(len(name) for name, _ in rows) + 2
    lines = [header, " " * width + "".join(f"{names.get(c, c):>15}" for c in cols)]
    lines += [f"{name:{width}}" + "".join(f"{cell(r, c):>15}" for c in cols) for name, r in rows]
    return "\n".join(lines)


def evaluate_file(path, data_name: str, features: str = "classifier", k: int = 3) -> str:
    """Every metric of a samples file written by `python -m ganlib sample`, as a small text table, next to
    the same metrics for real held-out data (the floor) at the same number of samples, with the protocol."""
    arrays = read_samples(path)
    if "points" in arrays:
        return _evaluate_points(arrays["points"], data_name, k)
    imgs = torch.from_numpy(np.asarray(arrays["images"]))
    if imgs.ndim != 4 or imgs.dtype != torch.uint8:
        raise GanlibError(f"'images' should be uint8 [N, H, W, C], got {imgs.dtype} {list(imgs.shape)}.")
    x = imgs.permute(0, 3, 1, 2).float().div(127.5).sub(1)  # [N, C, H, W] in [-1, 1]
    labels = torch.from_numpy(arrays["labels"]).long() if "labels" in arrays else None
    res = x.shape[-1]
    extractor = feature_extractor(features, data_name, res)
    train = datasets.load(data_name, resolution=res, split="train")
    test = datasets.load(data_name, resolution=res, split="test")
    if (train.channels, train.resolution) != tuple(x.shape[1:3]) or x.shape[2] != x.shape[3]:
        raise GanlibError(f"the samples are {list(x.shape[1:])} images, but {data_name} at this resolution is "
                          f"{list(train.shape)}: pass the --data the generator was trained on.")
    train_x = train.batch(torch.arange(len(train)))[0]
    real_feats = extractor(train_x)
    real_radii = knn_radii(real_feats, k)  # once for every row below
    judge = judge_for(data_name, res) if train.labels is not None else None
    n = min(len(x), len(test))
    test_x, test_y = test.batch(torch.arange(n))

    def measure(images, wanted_labels):
        m = feature_metrics(real_feats, extractor(images), k=k, real_radii=real_radii)
        m["nn"] = float(nearest_neighbour_distances(images, train_x).median())
        if judge is not None:
            scores = judge.score(images, wanted_labels)
            m.update({c: scores[c] for c in ("classes", "confidence", "label_accuracy", "shape_ok", "recognisable")
                      if c in scores})
        return m

    rows = [("samples", measure(x, labels))]
    if n < len(x):
        rows.append((f"samples[:{n}]", measure(x[:n], labels[:n] if labels is not None else None)))
    rows.append((f"real test ({n})", measure(test_x, test_y if labels is not None else None)))
    cols = ["fd", "kid", "precision", "recall", "nn"]
    cols += [c for c in ("classes", "confidence", "label_accuracy", "shape_ok", "recognisable")
             if all(c in r for _, r in rows)]
    header = (f"{data_name} at {res}x{res}, {len(x)} samples. Features: {extractor.name}. "
              + _protocol_note(features, len(x)) + "Reference: the "
              f"{len(train)} training images. fd (Fréchet distance; grows as N shrinks, so compare rows of equal "
              f"N), kid (unbiased, mean±std over 100 subsets of min(1000, N)), precision and recall "
              f"(k={k} nearest-neighbour manifolds), nn dist (median pixel distance to the nearest training "
              f"image: near 0 means copying)"
              + (f", classes covered of {judge.num_classes} and mean confidence of the classifier"
                 if judge is not None else "")
              + (", shape_ok: share whose shape class the judge recognises, recognisable: share with a "
                 "recognisable shape in a plausible colour (`ShapesJudge`)"
                 if isinstance(judge, ShapesJudge) else "") + ".")
    return _table(header, rows, cols)


def _protocol_note(features: str, n: int) -> str:
    """How the numbers of `evaluate_file` relate to papers' (for the Inception features)."""
    if features == "inception":
        return "These Inception features are not comparable with papers: use --features fid for that. "
    if features != "fid":
        return ""
    note = (f"Papers' protocol (StyleGAN2-ADA's fid50k_full, kid50k_full, pr50k3_full): {PAPER_SAMPLES:,} "
            f"generated images against every training image, KID over 100 subsets of 1000, precision/recall "
            f"with k=3")
    if n >= PAPER_SAMPLES:
        return note + "; this file follows it. "
    return (note + f"; this file has {n:,} samples, so its FD is higher than the paper protocol's (FD grows as N "
            f"shrinks): write {PAPER_SAMPLES:,} with `python -m ganlib sample RUN --num {PAPER_SAMPLES}` for a "
            f"number comparable with papers. ")


def _evaluate_points(points: np.ndarray, data_name: str, k: int) -> str:
    ref = datasets.load(data_name)
    if ref.kind != "points":
        raise GanlibError(f"the file holds 2-D points, but {data_name} is an image dataset: pass --data ring8 "
                          f"or grid25.")
    pts = torch.from_numpy(np.asarray(points, dtype=np.float32))
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise GanlibError(f"'points' has shape {list(pts.shape)}; expected [N, 2].")
    reference = ref.points[:max(len(pts), 2500)]  # training draw (seed 0)
    held_out = datasets.load(data_name, seed=1).points[: len(pts)]  # an independent draw: the floor

    def measure(p):
        return {**mode_coverage(p, ref.centres, ref.std), **feature_metrics(reference, p, k=k)}

    header = (f"{data_name}, {len(pts)} samples. modes: covered modes (a sample within 3 std of a mode is high "
              f"quality, hq); reverse KL of the modes' shares to uniform; fd, kid, precision, recall "
              f"(k={k}) on the coordinates against {len(reference)} points of the data.")
    return _table(header, [("samples", measure(pts)), ("real data", measure(held_out))],
                  ["modes", "hq", "reverse_kl", "fd", "kid", "precision", "recall"])

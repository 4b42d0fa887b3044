"""Measuring a generator without downloads.

- 2-D toys: `mode_coverage` (the VEEGAN/PacGAN protocol: a sample is *high quality* when it lies within
  3 std of its nearest mode; a mode is *covered* when at least one high-quality sample is nearest to it).
- Images of labelled offline datasets (digits): a small CNN classifier, trained deterministically in seconds
  on the training split and cached, gives features and class probabilities; `classifier_metrics` reports the
  Fréchet distance of the features to the real training images (FID's formula on the classifier's features,
  so its values are not comparable with Inception FIDs), the number of classes covered and the mean
  classifier confidence.
- `shapes`: the same, with a classifier of the joint (shape, colour) class (`ShapesJudge`), which also reports
  the share of images with a recognisable shape in a plausible colour.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import data as datasets
from .errors import GanlibError
from .files import atomic_save, cache_dir

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
# A small classifier as feature extractor

CLASSIFIER_VERSION = 2  # bump when the architecture or its training changes (invalidates the cache)


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
    epochs = int(min(30, max(2, images_seen // len(train))))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        model = Classifier(train.channels, train.num_classes).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        n = len(train)
        for _ in range(epochs):
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

    def __init__(self, data_name: str, resolution: int):
        self.data_name = data_name
        train = self.labelled(resolution, "train")
        if train.kind != "images" or train.labels is None:
            raise GanlibError(f"image metrics need a labelled image dataset; {data_name} is not one.")
        self.resolution, self.channels = resolution, train.channels
        self.num_classes = train.num_classes
        path = cache_dir() / f"classifier-{self.cache_name}-{resolution}-v{CLASSIFIER_VERSION}.pt"
        state = None
        if path.is_file():
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:
                state = None  # a broken cache file is rebuilt, not reported
        self.model = Classifier(train.channels, train.num_classes)
        if state is not None:
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
        atomic_save({"model": self.model.state_dict(), "test_accuracy": self.test_accuracy,
                     "ref_mu": torch.from_numpy(self.ref_mu), "ref_cov": torch.from_numpy(self.ref_cov)}, path)

    cache_name = property(lambda self: self.data_name)  # names the cached classifier file
    images_seen = 20_000  # the classifier's training budget (see `train_classifier`)

    def labelled(self, resolution: int, split: str):
        """The images and the labels the classifier learns (the dataset's own labels)."""
        return datasets.load(self.data_name, resolution=resolution, split=split)

    def reference(self, resolution: int):
        """The real images whose feature statistics generated images are compared with (the training split)."""
        return self.labelled(resolution, "train")

    def score(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        """Metrics for generated images [N, C, R, R] in [-1, 1] (and the labels they were asked for).

        Returns ``fd`` (Fréchet distance of classifier features to the real training images), ``classes``
        (classes covered: predicted for at least a fifth of their fair share N/K of the samples),
        ``confidence`` (mean top class probability) and, with `labels`, ``label_accuracy`` (share classified
        as the requested class).
        """
        if images.ndim != 4 or images.shape[1] != self.channels or images.shape[-1] != self.resolution:
            raise GanlibError(f"these metrics are for {self.data_name} at {self.channels}x{self.resolution}x"
                              f"{self.resolution}, got images of shape {list(images.shape[1:])}.")
        feats, probs = classify(self.model, images)
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
    clean shape (uniform noise, two shapes blended, a shape seen at 4x4 and blown up, the background alone,
    a shape in grey), so that such images are not forced into a shape class.

    It looks at every image at 16x16 (`RESOLUTION`): larger images are box-downsampled, smaller ones
    nearest-upsampled (so the blocky output of a progressive GAN's early stages is judged as what it is).
    One classifier thus serves every resolution, and figures of different resolutions are comparable.

    `score` reports ``shape_ok`` (share of images whose most likely shape, colours summed out, has
    probability >= `threshold`, i.e. beats "no shape" and the other shapes together), ``colour_ok`` (the
    same for the colour, shapes summed out), and ``recognisable`` (both at once: a recognisable shape in a
    plausible colour), besides ``fd``, ``classes`` (the (shape, colour) pairs covered, of 18) and
    ``confidence``. Real images score about 1.0; noise, grey shapes and two shapes blended score near 0.
    """

    RESOLUTION = 16
    threshold = 0.5  # the probability the most likely shape (colour) needs: even odds against everything else
    cache_name = "shapes-joint"
    images_seen = 60_000  # rotated shapes need more steps than digits
    pairs = len(datasets.SHAPE_NAMES) * len(datasets.SHAPE_COLOURS)  # 18; class 18 is "no shape"

    def __init__(self, data_name: str = "shapes", resolution: int = RESOLUTION):
        super().__init__("shapes", self.RESOLUTION)

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
        """Images that are not a clean shape, made from real ones: uint8 [N/4, 3, R, R], five kinds equally."""
        g = torch.Generator().manual_seed(seed)
        k = len(images) // 20
        pick = lambda: images[torch.randint(len(images), (k,), generator=g)].float()  # [k, 3, R, R]
        r = images.shape[-1]
        noise = torch.rand(k, *images.shape[1:], generator=g) * 255
        blend = (pick() + pick()) / 2
        blocky = F.interpolate(F.avg_pool2d(pick(), r // 4), scale_factor=r // 4, mode="nearest")
        empty = pick()[:, :, :1, :1].expand(-1, -1, r, r)  # a corner's colour everywhere: the background
        grey = pick().mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
        return torch.cat([noise, blend, blocky, empty, grey]).round().to(torch.uint8)

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, R, R] -> [N, 3, 16, 16]: box-downsampled or nearest-upsampled."""
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] != images.shape[-2]:
            raise GanlibError(f"the shapes judge scores RGB images [N, 3, R, R], got {list(images.shape)}.")
        r = images.shape[-1]
        if r > self.RESOLUTION:
            return F.avg_pool2d(images.float(), r // self.RESOLUTION)
        return F.interpolate(images.float(), scale_factor=self.RESOLUTION // r, mode="nearest")

    def score(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        """The figures above for images [N, 3, R, R] in [-1, 1], any R; `labels`, if given, are shape classes
        (what a conditional model asks for), and ``label_accuracy`` is the share whose most likely shape is
        the requested one."""
        feats, probs = classify(self.model, self.resize(images))
        pairs = probs[:, : self.pairs].reshape(len(images), len(datasets.SHAPE_NAMES), -1)  # [N, 3, 6]
        shape_p, colour_p = pairs.sum(2), pairs.sum(1)  # [N, 3], [N, 6]
        shape_ok = shape_p.max(1).values >= self.threshold  # [N]
        colour_ok = colour_p.max(1).values >= self.threshold
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


def classifier_metrics(images: torch.Tensor, data_name: str = "digits", labels: torch.Tensor | None = None) -> dict:
    """`ImageJudge.score` for images of `data_name` at their own resolution."""
    return judge_for(data_name, images.shape[-1]).score(images, labels)


# ----------------------------------------------------------------------------------------------------------
# The `evaluate` command


def evaluate_file(path, data_name: str) -> str:
    """The metrics of a samples file written by `python -m ganlib sample`, as a small text table, next to
    the same metrics for real held-out data (the floor) at the same number of samples."""
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
    if "points" in arrays:
        ref = datasets.load(data_name)
        if ref.kind != "points":
            raise GanlibError(f"{path.name} holds 2-D points, but {data_name} is an image dataset: pass --data "
                              f"ring8 or grid25.")
        pts = torch.from_numpy(np.asarray(arrays["points"], dtype=np.float32))
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise GanlibError(f"'points' in {path.name} has shape {list(pts.shape)}; expected [N, 2].")
        m = mode_coverage(pts, ref.centres, ref.std)
        real = mode_coverage(ref.points[: len(pts)], ref.centres, ref.std)
        k = len(ref.centres)
        return (f"{data_name}, {len(pts)} samples (high quality = within 3 std of a mode)\n"
                f"{'':12}{f'modes/{k}':>9}{'hq':>8}{'rev-KL':>8}\n"
                f"{'samples':12}{m['modes']:>9}{m['hq']:>8.3f}{m['reverse_kl']:>8.3f}\n"
                f"{'real data':12}{real['modes']:>9}{real['hq']:>8.3f}{real['reverse_kl']:>8.3f}")
    if "images" not in arrays:
        raise GanlibError(f"{path.name} has neither 'images' nor 'points': write it with `python -m ganlib sample`.")
    imgs = torch.from_numpy(np.asarray(arrays["images"]))
    if imgs.ndim != 4 or imgs.dtype != torch.uint8:
        raise GanlibError(f"'images' in {path.name} should be uint8 [N, H, W, C], got {imgs.dtype} "
                          f"{list(imgs.shape)}.")
    x = imgs.permute(0, 3, 1, 2).float().div(127.5).sub(1)  # [N, C, H, W] in [-1, 1]
    labels = torch.from_numpy(arrays["labels"]).long() if "labels" in arrays else None
    judge = judge_for(data_name, x.shape[-1])
    m = judge.score(x, labels)
    test = datasets.load(data_name, resolution=x.shape[-1], split="test")
    n = min(len(x), len(test))
    floor = judge.score(test.batch(torch.arange(n))[0], test.labels[:n] if labels is not None else None)
    if n < len(x):
        m_same_n = judge.score(x[:n], labels[:n] if labels is not None else None)
    else:
        m_same_n = m
    rows = [("samples", m)] + ([(f"samples[:{n}]", m_same_n)] if n < len(x) else []) + [(f"real test ({n})", floor)]
    cols = ["fd", "classes", "confidence"] + (["label_accuracy"] if labels is not None else [])
    cols += [k for k in ("shape_ok", "colour_ok", "recognisable") if k in m]  # shapes only
    lines = [f"{data_name} at {x.shape[-1]}x{x.shape[-1]}: Fréchet distance of classifier features to the real "
             f"training images (lower is better; it grows as N shrinks, so compare at equal N), classes covered "
             f"of {judge.num_classes}, mean confidence; classifier test accuracy {judge.test_accuracy:.3f}",
             f"{'':18}" + "".join(f"{c:>16}" for c in cols)]
    for name, r in rows:
        lines.append(f"{name:18}" + "".join(f"{r[c]:>16.3f}" if isinstance(r[c], float) else f"{r[c]:>16}"
                                            for c in cols))
    return "\n".join(lines)

"""The judges: a small CNN classifier of a labelled offline dataset (shipped with ganlib for digits at 16x16 and
shapes, else trained deterministically and cached) and what it scores; `ShapesJudge` for `shapes`."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ganlib import data as datasets
from ganlib import shapes
from ganlib.errors import GanlibError
from ganlib.files import PRETRAINED, atomic_save, damage
from ganlib.metrics.formulas import frechet_distance_from_stats, gaussian_stats

__all__ = [
    "cache_dir", "CLASSIFIER_VERSION", "Classifier", "train_classifier", "classify", "ImageJudge", "ShapesJudge",
    "JUDGES", "judge_for", "ship_judge", "classifier_metrics"
]

def cache_dir() -> Path:
    """$GANLIB_CACHE, else ~/.cache/ganlib: where trained classifiers (and the benchmarks' runs) are kept."""
    return Path(os.environ.get("GANLIB_CACHE") or Path.home() / ".cache" / "ganlib")


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
        cache folder (`cache_dir`), else train it and cache it; False trains it afresh and writes nothing."""
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
    pairs = len(shapes.SHAPE_NAMES) * len(shapes.SHAPE_COLOURS)  # 18; class 18 is "no shape"

    def __init__(self, data_name: str = "shapes", resolution: int = RESOLUTION, cached: bool = True):
        super().__init__("shapes", self.RESOLUTION, cached)

    def labelled(self, resolution: int, split: str) -> datasets.ImageData:
        d = datasets.load("shapes", resolution=resolution, split=split)
        joint = d.factors["shape"] * len(shapes.SHAPE_COLOURS) + d.factors["colour"]  # [N]
        negatives = self.not_shapes(d.images, seed=len(d))
        names = [f"{c} {s}" for s in shapes.SHAPE_NAMES for c in shapes.SHAPE_COLOURS] + ["no shape"]
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
        shape_p, colour_p = self.shape_colour(probs)  # [N, 3], [N, 6]
        shape_ok = shape_p.max(1).values >= self.threshold  # [N]
        legal = torch.tensor([*shapes.SHAPE_COLOURS.values(), *shapes.SHAPE_BACKGROUNDS.values()]) * 2 - 1
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

    def shape_colour(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The probability of each shape, colours summed out [N, 3], and of each colour, shapes summed out [N, 6],
        from the classifier's class probabilities [N, 19] ("no shape" left out)."""
        pairs = probs[:, : self.pairs].reshape(len(probs), len(shapes.SHAPE_NAMES), -1)  # [N, 3, 6]
        return pairs.sum(2), pairs.sum(1)

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
    ``OMP_NUM_THREADS=2 python -c "from gancourse import evaluation; evaluation.ship_judge('shapes', 16)"`` and the same
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

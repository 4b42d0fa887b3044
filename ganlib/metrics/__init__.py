"""Measuring a generator without downloads: a package, one module per concept, every name re-exported here
(``metrics.X``).

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
- `shape_geometry` (`geometry`): a shape's position, size and colours read off the pixels; `styles`: what
  chapter 03 measures with it and the shapes judge (`read_factors`, `mixing_shares`, `perceptual_path_length`).
- `evaluate_file` (`evaluate`): the `evaluate` command.

Modules: `formulas` (the metrics on features), `judges` (classifiers and what they score), `extractors`
(feature extractors), `geometry`, `styles`, `evaluate`.
"""

from ..files import PRETRAINED, cache_dir
from .evaluate import evaluate_file, read_samples
from .extractors import (
    FEATURES,
    FID_INSTALL,
    PAPER_SAMPLES,
    ClassifierFeatures,
    FeatureExtractor,
    FIDInceptionFeatures,
    InceptionFeatures,
    feature_extractor,
)
from .formulas import (
    feature_metrics,
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
    in_manifold,
    inception_score,
    kid,
    knn_radii,
    mmd2_unbiased,
    mode_coverage,
    nearest_neighbour_distances,
    polynomial_kernel,
    precision_recall,
)
from .geometry import shape_geometry
from .judges import (
    CLASSIFIER_VERSION,
    JUDGES,
    Classifier,
    ImageJudge,
    ShapesJudge,
    classifier_metrics,
    classify,
    judge_for,
    ship_judge,
    train_classifier,
)
from .styles import FACTORS, mixing_shares, perceptual_path_length, read_factors

__all__ = [
    "PRETRAINED", "cache_dir",
    "mode_coverage", "gaussian_stats", "frechet_distance_from_stats", "frechet_distance", "polynomial_kernel",
    "mmd2_unbiased", "kid", "inception_score", "knn_radii", "in_manifold", "precision_recall",
    "nearest_neighbour_distances", "feature_metrics",
    "CLASSIFIER_VERSION", "Classifier", "train_classifier", "classify", "ImageJudge", "ShapesJudge", "JUDGES",
    "judge_for", "ship_judge", "classifier_metrics",
    "FeatureExtractor", "ClassifierFeatures", "InceptionFeatures", "FIDInceptionFeatures", "FID_INSTALL",
    "PAPER_SAMPLES", "FEATURES", "feature_extractor",
    "shape_geometry", "FACTORS", "read_factors", "mixing_shares", "perceptual_path_length",
    "read_samples", "evaluate_file",
]

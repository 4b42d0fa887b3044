"""The course's instruments for measuring a generator without downloads, every name re-exported here
(``evaluation.X``); the formulas they feed are `ganlib.metrics`.

- Features come from a `FeatureExtractor`: `ClassifierFeatures`, a small CNN classifier of a labelled offline
  dataset, shipped for digits (16x16) and shapes in ``ganlib/pretrained`` (so every machine scores with the same
  weights) and otherwise trained deterministically in seconds and cached; `FIDInceptionFeatures`, the 2015
  TensorFlow Inception of the FID papers through torch-fidelity (the optional extra ``ganlib[fid]``; weights
  downloaded once): with the papers' protocol, numbers comparable with published FID/KID/precision-recall; or
  `InceptionFeatures`, torchvision's ImageNet Inception-v3 (downloaded once, no extra package; other weights
  and resize, so not comparable with papers). Values on one extractor's features are not comparable with
  another's.
- `classifier_metrics` / `ImageJudge.score`: the classifier's Fréchet distance to the real training images,
  the number of classes covered and the mean classifier confidence.
- `shapes`: `ShapesJudge`, a classifier of the joint (shape, colour) class plus "no shape", which also reports
  the share of images with a recognisable shape in a plausible colour.
- `styles`: what chapter 03 measures with `ganlib.metrics.shape_geometry` and the shapes judge (`read_factors`,
  `mixing_shares`, `perceptual_path_length`).
- `evaluate_file` (`evaluate`): the `evaluate` command.

Modules: `judges` (classifiers and what they score), `extractors` (feature extractors), `styles`, `evaluate`.
"""

from ganlib.files import PRETRAINED

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
from .judges import (
    CLASSIFIER_VERSION,
    JUDGES,
    Classifier,
    ImageJudge,
    ShapesJudge,
    cache_dir,
    classifier_metrics,
    classify,
    judge_for,
    ship_judge,
    train_classifier,
)
from .styles import FACTORS, mixing_shares, perceptual_path_length, read_factors

__all__ = [
    "PRETRAINED", "cache_dir",
    "CLASSIFIER_VERSION", "Classifier", "train_classifier", "classify", "ImageJudge", "ShapesJudge", "JUDGES",
    "judge_for", "ship_judge", "classifier_metrics",
    "FeatureExtractor", "ClassifierFeatures", "InceptionFeatures", "FIDInceptionFeatures", "FID_INSTALL",
    "PAPER_SAMPLES", "FEATURES", "feature_extractor",
    "FACTORS", "read_factors", "mixing_shares", "perceptual_path_length",
    "read_samples", "evaluate_file",
]

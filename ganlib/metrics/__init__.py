"""Measuring a generator: the formulas of the metrics, one module per concept, every name re-exported here
(``metrics.X``).

- 2-D toys: `mode_coverage` (the VEEGAN/PacGAN protocol: a sample is *high quality* when it lies within
  3 std of its nearest mode; a mode is *covered* when at least one high-quality sample is nearest to it).
- Any features [N, D] of real and generated samples: `frechet_distance` (FID's formula), `kid` (the
  unbiased squared MMD with the cubic kernel of Binkowski et al. 2018, mean and std over subsets),
  `precision_recall` (k-nearest-neighbour manifolds, Kynkaanniemi et al. 2019), `nearest_neighbour_distances`
  (does a generator copy its training set?); `feature_metrics` computes them together.
- `shape_geometry` (`geometry`): a shape's position, size and colours read off the pixels.

Where the features come from (the judges' classifiers, Inception networks) and the `evaluate` command are
the course's instruments, in `gancourse.evaluation`.

Modules: `formulas` (the metrics on features), `geometry`.
"""

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

__all__ = [
    "mode_coverage", "gaussian_stats", "frechet_distance_from_stats", "frechet_distance", "polynomial_kernel",
    "mmd2_unbiased", "kid", "inception_score", "knn_radii", "in_manifold", "precision_recall",
    "nearest_neighbour_distances", "feature_metrics",
    "shape_geometry",
]

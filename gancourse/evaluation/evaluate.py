"""The `evaluate` command: every metric of a samples file, next to real held-out data's, as a text table."""

from __future__ import annotations

import numpy as np
import torch

from ganlib.errors import GanlibError
from ganlib.metrics.formulas import feature_metrics, knn_radii, mode_coverage, nearest_neighbour_distances

from .. import datasets
from .extractors import PAPER_SAMPLES, feature_extractor
from .judges import ShapesJudge, judge_for

__all__ = ["read_samples", "evaluate_file"]


def read_samples(path) -> dict[str, np.ndarray]:
    """The arrays of a samples file written by `python -m gancourse sample`, with one-line errors."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise GanlibError(f"no samples file at {str(path)!r}: write one with `python -m gancourse sample`.")
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception:
        raise GanlibError(f"{str(path)!r} is not a readable .npz file: write it with "
                          f"`python -m gancourse sample`.") from None
    if "points" not in arrays and "images" not in arrays:
        raise GanlibError(f"{path.name} has neither 'images' nor 'points': write it with `python -m gancourse sample`.")
    return arrays


def _table(header: str, rows: list[tuple[str, dict]], cols: list[str]) -> str:
    """The header, then one line per row: its name, then its value in each column, right-aligned in columns as
    wide as their widest cell, two spaces apart (so numbers of any width never run together)."""
    def cell(r: dict, c: str) -> str:
        if c == "kid":  # with its std over subsets
            return f"{r['kid']:.4g}±{r['kid_std']:.2g}"
        return f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c])

    names = {"label_accuracy": "label acc", "nn": "nn dist"}
    table = [["", *(names.get(c, c) for c in cols)]] + [[name, *(cell(r, c) for c in cols)] for name, r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = [header] + [line[0].ljust(widths[0]) + "".join(f"  {text:>{w}}" for text, w in zip(line[1:], widths[1:]))
                        for line in table]
    return "\n".join(lines)


def _check_counts(n: int, k: int, what: str) -> None:
    """Precision and recall need k nearest neighbours among the samples, and the rest at least 2 samples."""
    if n < 2:
        raise GanlibError(f"the file holds {n} {what}; the metrics need at least 2 (and 1000 or more for numbers "
                          f"worth comparing): write more with `python -m gancourse sample RUN --num 1000`.")
    if not 1 <= k < n:
        raise GanlibError(f"--k {k}: precision and recall use the k nearest neighbours among the {n} {what}, so k "
                          f"must be from 1 to {n - 1} (default 3).")


def evaluate_file(path, data_name: str, features: str = "classifier", k: int = 3) -> str:
    """Every metric of a samples file written by `python -m gancourse sample`, as a small text table, next to
    the same metrics for real held-out data (the floor) at the same number of samples, with the protocol."""
    arrays = read_samples(path)
    if "points" in arrays:
        return _evaluate_points(arrays["points"], data_name, k)
    imgs = torch.from_numpy(np.asarray(arrays["images"]))
    if imgs.ndim != 4 or imgs.dtype != torch.uint8:
        raise GanlibError(f"'images' should be uint8 [N, H, W, C], got {imgs.dtype} {list(imgs.shape)}.")
    if imgs.shape[-1] not in (1, 3) and imgs.shape[1] in (1, 3):
        raise GanlibError(f"'images' is {list(imgs.shape)}, channels first; `sample` writes them channels last "
                          f"[N, H, W, C]: save images.transpose(0, 2, 3, 1) instead.")
    if imgs.shape[1] != imgs.shape[2] or imgs.shape[-1] not in (1, 3):
        raise GanlibError(f"'images' is {list(imgs.shape)}: expected square images with 1 or 3 channels, "
                          f"[N, R, R, C], as `python -m gancourse sample` writes them.")
    _check_counts(len(imgs), k, "images")
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
            f"shrinks): write {PAPER_SAMPLES:,} with `python -m gancourse sample RUN --num {PAPER_SAMPLES}` for a "
            f"number comparable with papers. ")


def _evaluate_points(points: np.ndarray, data_name: str, k: int) -> str:
    ref = datasets.load(data_name)
    if ref.kind != "points":
        raise GanlibError(f"the file holds 2-D points, but {data_name} is an image dataset: pass --data ring8 "
                          f"or grid25.")
    pts = torch.from_numpy(np.asarray(points, dtype=np.float32))
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise GanlibError(f"'points' has shape {list(pts.shape)}; expected [N, 2].")
    _check_counts(len(pts), k, "points")
    bad = int((~torch.isfinite(pts).all(dim=1)).sum())
    if bad:
        raise GanlibError(f"{bad} of the {len(pts)} points are NaN or infinite: the generator diverged; sample an "
                          f"earlier checkpoint (checkpoint.prev.pt) or train again with a lower learning rate.")
    reference = ref.points[:max(len(pts), 2500)]  # training draw (seed 0)
    held_out = datasets.load(data_name, seed=1).points[: len(pts)]  # an independent draw: the floor

    def measure(p):
        return {**mode_coverage(p, ref.centres, ref.std), **feature_metrics(reference, p, k=k)}

    header = (f"{data_name}, {len(pts)} samples. modes: covered modes (a sample within 3 std of a mode is high "
              f"quality, hq); reverse KL of the modes' shares to uniform; fd, kid, precision, recall "
              f"(k={k}) on the coordinates against {len(reference)} points of the data.")
    return _table(header, [("samples", measure(pts)), ("real data", measure(held_out))],
                  ["modes", "hq", "reverse_kl", "fd", "kid", "precision", "recall"])

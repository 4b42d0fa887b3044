"""A shape's geometry measured from its pixels (images of `shapes`, or of a generator imitating it)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["shape_geometry"]


def shape_geometry(images: torch.Tensor, threshold: float = 0.9, min_share: float = 0.03) -> dict[str, torch.Tensor]:
    """Where and how big the shape in each image of `shapes` (or a generator imitating it) is, measured from
    the pixels; chapter 03's `read_factors` and chapter 06's edits read the background and the position here.

    The background colour is the median of the image's border (each border pixel once); shape pixels differ
    from it by more than `threshold`, summed over RGB (images in [-1, 1]). The default 0.9 lies well below the
    smallest difference between a shape colour and a background of the dataset (1.5, blue on grey; the other
    pairs differ by 1.6 to 3.6), so every shape is found whatever its colours, and far enough above 0 that a
    slightly uneven background is not taken for shape. The shape is the largest 4-connected blob of such
    pixels (a generator's stray pixels are ignored).

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

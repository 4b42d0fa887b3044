"""Pictures: image grids, 2-D sample and density plots, interpolation strips, and a run's training curves
(`history.csv`, `plot_history`). The notebooks' sliders are the course's (`gancourse.widgets.interactive`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .errors import GanlibError
from .files import atomic_write_text

__all__ = [
    "as_image_batch", "image_grid", "save_image_grid", "show_images", "plot_points", "plot_discriminator",
    "save_points", "lerp", "slerp", "HISTORY_FILE", "write_history", "read_history", "plot_history"
]


def as_image_batch(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Images as the float tensor [N, C, H, W] in [-1, 1] that the pictures below take, from a tensor or a NumPy
    array, channels first or last (C = 1 or 3; channels last as `sample` writes them), floats in [-1, 1] or
    uint8 in 0..255; a GanlibError naming the fix for anything else."""
    x = torch.from_numpy(np.asarray(images)) if isinstance(images, np.ndarray) else images
    if not isinstance(x, torch.Tensor):
        raise GanlibError(f"images must be a tensor or a NumPy array [N, C, H, W], got {type(images).__name__}.")
    if x.ndim != 4:
        raise GanlibError(f"images must be a batch [N, C, H, W], got shape {list(x.shape)}: add a batch axis with "
                          f"x[None] for a single image.")
    if x.shape[1] not in (1, 3):
        if x.shape[-1] not in (1, 3):
            raise GanlibError(f"images must have 1 or 3 channels, on axis 1 [N, C, H, W] or last [N, H, W, C]; "
                              f"got shape {list(x.shape)}.")
        x = x.permute(0, 3, 1, 2)  # [N, H, W, C] -> [N, C, H, W]
    x = x.detach().cpu()
    return x.float() / 127.5 - 1 if x.dtype == torch.uint8 else x.float()


def image_grid(images: torch.Tensor | np.ndarray, nrow: int = 8, pad: int = 1) -> np.ndarray:
    """Images [N, C, H, W] in [-1, 1] (or what `as_image_batch` takes) -> one uint8 picture
    [rows*(H+pad)+pad, ..., C] (C = 1 or 3)."""
    x = ((as_image_batch(images).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    ncol = min(nrow, n)
    rows = -(-n // ncol)
    grid = torch.full((c, rows * (h + pad) + pad, ncol * (w + pad) + pad), 255, dtype=torch.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = x[i]
    return grid.permute(1, 2, 0).numpy()  # [H', W', C]


def save_image_grid(images: torch.Tensor | np.ndarray, path: str | Path, nrow: int = 8) -> None:
    """Save images [N, C, H, W] in [-1, 1] (or what `as_image_batch` takes) as one picture file, `nrow` images per
    row (`image_grid`); the file's suffix picks the format (.png)."""
    from PIL import Image

    grid = image_grid(images, nrow)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)


def show_images(images: torch.Tensor | np.ndarray, nrow: int = 8, title: str | None = None, ax=None,
                scale: float = 0.5):
    """Draw a grid of images [N, C, H, W] in [-1, 1] (or what `as_image_batch` takes: a NumPy array, channels
    last, uint8) with matplotlib; returns the axes."""
    import matplotlib.pyplot as plt

    grid = image_grid(images, nrow)
    if ax is None:
        h, w = grid.shape[:2]
        _, ax = plt.subplots(figsize=(max(2.0, scale * w / 10), max(2.0, scale * h / 10)))
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def plot_points(points: torch.Tensor, ax=None, centres: torch.Tensor | None = None, title: str | None = None,
                lim: float | None = None, color: str = "tab:blue", size: float = 2.0):
    """Scatter 2-D samples [N, 2] (and the true mode centres as black crosses)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3.2))
    p = points.detach().cpu().numpy()
    ax.scatter(p[:, 0], p[:, 1], s=size, alpha=0.5, color=color, linewidths=0)
    if centres is not None:
        c = centres.cpu().numpy()
        ax.scatter(c[:, 0], c[:, 1], marker="x", color="black", s=25, linewidths=1)
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


@torch.no_grad()
def plot_discriminator(D: Callable[[torch.Tensor], torch.Tensor], lim: float, ax=None, resolution: int = 120,
                       title: str | None = None):
    """Colour the plane by D's probability sigmoid(D(x)) that x is real (for a D on 2-D points)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3.2))
    ticks = torch.linspace(-lim, lim, resolution)
    xx, yy = torch.meshgrid(ticks, ticks, indexing="xy")
    grid = torch.stack([xx.flatten(), yy.flatten()], dim=1)
    device = next(D.parameters()).device if isinstance(D, torch.nn.Module) else "cpu"
    prob = torch.sigmoid(D(grid.to(device)).float().cpu()).reshape(resolution, resolution)
    im = ax.imshow(prob.numpy(), extent=(-lim, lim, -lim, lim), origin="lower", cmap="RdBu", vmin=0, vmax=1)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=9)
    return ax, im


def save_points(points: torch.Tensor, path: str | Path, reference=None) -> None:
    """Save a scatter plot of 2-D samples [N, 2] as a picture file, with the mode centres of `reference` (a
    toy dataset) when it has them."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    centres = getattr(reference, "centres", None)
    lim = float(centres.abs().max()) * 1.5 if centres is not None else None
    plot_points(points, ax=ax, centres=centres, lim=lim)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Straight line between latents a [D] and b [D] at times t [T] -> [T, D]."""
    return a[None] + t[:, None] * (b - a)[None]


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Great-circle interpolation between a [D] and b [D] at times t [T] -> [T, D]: keeps the norm typical of
    a Gaussian latent, where a straight line passes through the low-norm middle (White 2016)."""
    cos = torch.dot(a / a.norm(), b / b.norm()).clamp(-1, 1)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-6:
        return lerp(a, b, t)
    s = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / s)[:, None] * a[None] + (torch.sin(t * omega) / s)[:, None] * b[None]


# ----------------------------------------------------------------------------------------------------------
# The training history: history.csv in a run folder, and its plot

HISTORY_FILE = "history.csv"  # in every run folder, beside checkpoint.pt: one row per logged step


def write_history(history: list[dict], path: str | Path) -> None:
    """Write a trainer's history (a list of {name: value} dicts, one per logged step) as CSV: one column per
    name, in order of first appearance (step, kimg, seconds, the losses, then recorded metrics); a value an
    entry does not have is left empty."""
    import csv
    import io

    columns = list(dict.fromkeys(k for entry in history for k in entry))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(text.getvalue(), path)


def read_history(run: str | Path | list[dict]) -> dict[str, np.ndarray]:
    """A history as columns {name: float array [steps]} (NaN where a step has no value), from a run folder,
    its history.csv, or a trainer's `history` list."""
    import csv

    if isinstance(run, (str, Path)):
        path = Path(run) if Path(run).suffix == ".csv" else Path(run) / HISTORY_FILE
        if not path.is_file():
            raise GanlibError(f"no {path.name} in {str(path.parent)!r}: it is written with every checkpoint of a "
                              f"run folder; train first, or pass the folder of a run.")
        with open(path, newline="") as f:
            run = list(csv.DictReader(f))
    columns = list(dict.fromkeys(k for entry in run for k in entry))
    return {c: np.array([float(e[c]) if e.get(c, "") != "" else np.nan for e in run]) for c in columns}


def plot_history(run: str | Path | list[dict], metrics: tuple[str, ...] = ("fd",), axes=None):
    """A run's training curves side by side: the losses of D and G, D's mean raw output (logit, or critic score)
    on real and on generated images (``logit_real``, ``logit_fake``), and each quality metric the run recorded
    (with `Trainer.record`).

    Args:
        run: a run folder (its history.csv), a history.csv file, or a trainer's `history` list.
        metrics: the recorded metrics to draw, each in a panel of its own; those the history lacks are left out.
        axes: matplotlib axes to draw into, one per panel (default: a new figure).
    Returns a list of the axes drawn into, one per panel (``axes[0].figure`` is the figure).
    """
    import matplotlib.pyplot as plt

    h = read_history(run)
    panels = [("loss", ["loss_d", "loss_g"]), ("D's mean logit", ["logit_real", "logit_fake"])]
    panels += [(m, [m]) for m in metrics if m in h and not np.isnan(h[m]).all()]
    panels = [(label, [c for c in cols if c in h]) for label, cols in panels]
    panels = [(label, cols) for label, cols in panels if cols]
    if axes is None:
        _, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 2.8), squeeze=False)
        axes = axes[0]
    for ax, (label, cols) in zip(axes, panels):
        for c in cols:
            has = ~np.isnan(h[c])
            ax.plot(h["step"][has], h[c][has], marker="." if has.sum() < 30 else None, label=c)
        ax.set(xlabel="step", ylabel=label)
        if len(cols) > 1:
            ax.legend(fontsize=8)
    plt.tight_layout()
    return list(axes[:len(panels)])

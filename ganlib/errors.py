"""User-facing errors: one sentence that says what is wrong and what to do.

Everything a student or instructor can get wrong (a dataset name, a path, a shape, a checkpoint) raises
`GanlibError`; the command line prints its message on one line instead of a traceback.
"""

from __future__ import annotations

import typing

__all__ = ["GanlibError", "TrainingDiverged", "first_line", "is_power_of_two", "check_resolution", "check_shape",
           "check_images"]

if typing.TYPE_CHECKING:
    import torch


class GanlibError(Exception):
    """A problem with the user's input, explained in one sentence with the fix."""


class TrainingDiverged(GanlibError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """An exception's message for a one-line error: its first line, at most `limit` characters (its type's
    name when it has no message)."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:limit]


def is_power_of_two(n: int) -> bool:
    """Whether `n` is a whole number 1, 2, 4, 8, ..."""
    return isinstance(n, int) and n > 0 and (n & (n - 1)) == 0


def check_resolution(resolution: int, low: int = 4, high: int = 1024, what: str = "resolution") -> int:
    """Return `resolution` if it is a power of two in [low, high], else raise a GanlibError."""
    if not is_power_of_two(resolution) or not low <= resolution <= high:
        powers = ", ".join(str(2**k) for k in range(low.bit_length() - 1, high.bit_length()))
        raise GanlibError(
            f"{what} {resolution!r} is not supported: use a power of two between {low} and {high} ({powers})."
        )
    return resolution


def check_shape(x: torch.Tensor | None, shape: tuple[int | None, ...], what: str,
                fix: str = "check the tensor's shape") -> None:
    """Check that `x` has `shape` (None: any size on that axis), else a GanlibError naming the axis that
    differs and `fix`, e.g. "z must be [N, 64], got [8, 32]: axis 1 is 32, not 64; ...". A missing `x` (None)
    gets the same sentence."""
    expected = "[" + ", ".join("N" if i == 0 and d is None else "*" if d is None else str(d)
                               for i, d in enumerate(shape)) + "]"
    if x is None:
        raise GanlibError(f"{what} {expected} is missing: {fix}.")
    if x.ndim != len(shape):
        raise GanlibError(f"{what} must be {expected}, got {list(x.shape)}: {x.ndim} axes, not {len(shape)}; {fix}.")
    for axis, (got, want) in enumerate(zip(x.shape, shape)):
        if want is not None and got != want:
            raise GanlibError(f"{what} must be {expected}, got {list(x.shape)}: axis {axis} is {got}, not {want}; "
                              f"{fix}.")


def check_images(x: torch.Tensor, channels: int, resolution: int | None, who: str,
                 dtype: torch.dtype | None = None) -> None:
    """Check that `x` is a batch of images [N, channels, resolution, resolution] of floating point numbers before
    a model uses it; `dtype`: the model's weights' (float64 images are refused unless it is float64 too)."""
    import torch

    expected = f"[N, {channels}, {resolution or 'R'}, {resolution or 'R'}]"
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise GanlibError(f"{who} expects a batch of images of shape {expected}, got {shape}; "
                          f"add a batch axis with x.unsqueeze(0) for a single image.")
    if not x.is_floating_point():
        raise GanlibError(f"{who} expects float images in [-1, 1], got {x.dtype}: convert them with "
                          f"x.float() / 127.5 - 1 (from 0..255).")
    if x.dtype == torch.float64 and dtype is not None and dtype != torch.float64:
        raise GanlibError(f"{who} has {dtype} weights and got float64 images: convert them with x.float().")
    if x.shape[1] != channels:
        if x.shape[-1] == channels:
            raise GanlibError(f"{who} expects channels first {expected}, got {list(x.shape)}, which looks "
                              f"channels last [N, H, W, C]: reorder it with x.permute(0, 3, 1, 2).")
        hint = {(1, 3): "a grey image given to an RGB model: repeat it with x.repeat(1, 3, 1, 1)",
                (3, 1): "an RGB image given to a grey model: average the channels with x.mean(1, keepdim=True)"}
        fix = hint.get((int(x.shape[1]), channels), "channels go on axis 1 (N, C, H, W)")
        rebuild = f", or build the model with img_channels={int(x.shape[1])}" if x.shape[1] in (1, 3, 4) else ""
        raise GanlibError(f"{who} expects {channels} channel(s) ({expected}), got {list(x.shape)}: {fix}{rebuild}.")
    if resolution is not None and tuple(x.shape[2:]) != (resolution, resolution):
        raise GanlibError(f"{who} expects {resolution}x{resolution} images ({expected}), got {list(x.shape)}: "
                          f"resize the images or build the model for resolution {int(x.shape[-1])}.")

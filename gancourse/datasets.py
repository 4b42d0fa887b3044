"""The datasets the library does not bundle, read into its containers (`ganlib.data.ImageData`), and the one
entry point the command line, the presets and the notebooks load every dataset through: ``load(name, ...)``.

Online, through torchvision (downloaded once into ``data_root()``):
    ``mnist``, ``fashion-mnist``, ``cifar10``

Local:
    ``folder:PATH``  every image under PATH (one size, square); sub-folders become class labels

Every other name is one of the library's offline sets (`ganlib.data.OFFLINE`: ring8, grid25, digits, shapes).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ganlib.data import OFFLINE, ImageData, PointData, resize_images
from ganlib.data import load as load_offline
from ganlib.errors import GanlibError, check_resolution, first_line

__all__ = ["IMAGE_SUFFIXES", "data_root", "downloads_allowed", "TORCHVISION_SETS", "torchvision_set", "image_folder",
           "DATASETS", "load"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def data_root() -> Path:
    """Where downloaded datasets live: $GANLIB_DATA, else ~/.cache/ganlib/data."""
    return Path(os.environ.get("GANLIB_DATA") or Path.home() / ".cache" / "ganlib" / "data")


def downloads_allowed() -> bool:
    """False when GANLIB_OFFLINE=1 (the tests set it), so that nothing ever touches the network."""
    return os.environ.get("GANLIB_OFFLINE", "") not in ("1", "true", "yes")


TORCHVISION_SETS = {
    # name: (torchvision class, default resolution, class names)
    "mnist": ("MNIST", 32, [str(i) for i in range(10)]),
    "fashion-mnist": ("FashionMNIST", 32, ["t-shirt", "trouser", "pullover", "dress", "coat",
                                           "sandal", "shirt", "sneaker", "bag", "boot"]),
    "cifar10": ("CIFAR10", 32, ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]),
}


def torchvision_set(name: str, resolution: int | None = None, split: str = "train",
                    root: str | Path | None = None) -> ImageData:
    """One of `TORCHVISION_SETS` (MNIST, Fashion-MNIST, CIFAR-10, ...) through torchvision, as `ImageData` of
    `split` at `resolution` (default: the set's own), downloaded once into `root` (default `data_root()`); a
    one-line GanlibError when it is not there and downloads are off or fail."""
    import torchvision.datasets as tvd

    cls_name, default_res, class_names = TORCHVISION_SETS[name]
    root = Path(root) if root else data_root()
    if split not in ("train", "test"):
        raise GanlibError(f"split {split!r} does not exist for {name}: use 'train' or 'test'.")
    cls = getattr(tvd, cls_name)
    try:
        ds = cls(str(root), train=(split == "train"), download=False)
    except RuntimeError:
        if not downloads_allowed():
            raise GanlibError(f"{name} is not in {root} and downloads are off (GANLIB_OFFLINE=1): unset it "
                              f"on a machine with network, or use --data digits, which needs no download.") from None
        try:
            ds = cls(str(root), train=(split == "train"), download=True)
        except Exception as e:  # no network, blocked host, disk full: say so in one line
            raise GanlibError(f"{name} is not in {root} and could not be downloaded ({first_line(e, 120)}): connect "
                              f"to the network once, or use --data digits, which needs no download.") from None
    data = torch.as_tensor(np.asarray(ds.data))
    images = data[:, None] if data.ndim == 3 else data.permute(0, 3, 1, 2)  # [N, C, H, W] uint8
    labels = torch.as_tensor(np.asarray(ds.targets)).long()
    images = resize_images(images.contiguous(), resolution or default_res)
    return ImageData(name, images, labels, len(class_names), class_names)


# ----------------------------------------------------------------------------------------------------------
# A folder of images


def image_folder(path: str | Path, resolution: int | None = None) -> ImageData:
    """Every image under `path`, all of one square size of at least 4x4; immediate sub-folders (two or more)
    become classes, and then every image must be in one. Images are resized to `resolution` (default: the
    largest power of two not above their size); upsampling blurs them, so it comes with a warning."""
    from PIL import Image

    path = Path(path).expanduser()
    if not path.is_dir():
        raise GanlibError(f"image folder {str(path)!r} does not exist: check the path after 'folder:'.")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise GanlibError(f"no images (png, jpg, ...) found under {str(path)!r}: point 'folder:' at a folder "
                          f"that contains image files.")
    sizes: dict[tuple[int, int], Path] = {}
    pictures = []
    grey = True
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                sizes.setdefault(im.size, f)
                grey &= im.mode in ("1", "L", "LA", "I", "I;16", "F")
                pictures.append(im.copy())
        except Exception:
            raise GanlibError(f"{str(f)!r} is not a readable image: delete or replace it.") from None
    if len(sizes) > 1:
        (a, fa), (b, fb) = list(sizes.items())[:2]
        raise GanlibError(f"images under {str(path)!r} have different sizes ({a[0]}x{a[1]} in {fa.name}, "
                          f"{b[0]}x{b[1]} in {fb.name}): crop and resize them all to one square size first.")
    (w, h), _ = next(iter(sizes.items()))
    if w != h:
        raise GanlibError(f"images under {str(path)!r} are {w}x{h}, not square: crop them to squares first.")
    if w < 4:
        raise GanlibError(f"images under {str(path)!r} are {w}x{h}, too small to train on: use images of at "
                          f"least 4x4.")
    classes = sorted({f.relative_to(path).parts[0] for f in files if len(f.relative_to(path).parts) > 1})
    stray = [f for f in files if len(f.relative_to(path).parts) == 1]
    if len(classes) >= 2 and stray:
        raise GanlibError(f"{str(stray[0])!r} lies beside the class folders ({', '.join(classes[:4])}"
                          f"{', ...' if len(classes) > 4 else ''}) of {str(path)!r}: move it into its class's "
                          f"folder or delete it (for unlabelled data, put all images in one folder).")
    mode = "L" if grey else "RGB"
    arrays = [np.asarray(p.convert(mode)) for p in pictures]
    images = torch.from_numpy(np.stack(arrays))
    images = images[:, None] if mode == "L" else images.permute(0, 3, 1, 2)
    res = resolution or (1 << (w.bit_length() - 1))  # largest power of two not above the image size
    if res > w:
        warnings.warn(f"the {w}x{w} images under {str(path)!r} are upsampled to {res}x{res} (bilinear), so the "
                      f"model learns blurred images: pass --resolution {1 << (w.bit_length() - 1)} to keep them "
                      f"sharp.", stacklevel=2)
    images = resize_images(images.contiguous(), res)
    labels = None
    if len(classes) >= 2:
        index = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([index[f.relative_to(path).parts[0]] for f in files])
    else:
        classes = []
    return ImageData(f"folder:{path}", images, labels, len(classes), classes)


# ----------------------------------------------------------------------------------------------------------
# The entry point

DATASETS = (*OFFLINE, *TORCHVISION_SETS)


def load(name: str, resolution: int | None = None, split: str = "train", seed: int = 0,
         root: str | Path | None = None) -> PointData | ImageData:
    """Load a dataset by name (see the module docstring and `ganlib.data` for the list).

    Args:
        name: a name from `DATASETS`, or ``folder:PATH``.
        resolution: image side length, a power of two (default: the dataset's own, rounded to a power of two).
        split: ``train``, ``test`` (held-out images, for metrics) or ``all`` (digits only).
        seed: seed of the generated toy mixtures and shapes.
        root: where torchvision datasets are stored (default: `data_root()`).
    """
    if resolution is not None:
        check_resolution(resolution, low=4, high=1024)
    if name in TORCHVISION_SETS:
        return torchvision_set(name, resolution, split, root)
    if name.startswith("folder:"):
        if not name[len("folder:"):].strip():
            raise GanlibError("folder: needs the path of a folder of images after the colon, e.g. "
                              "folder:~/pictures/faces.")
        return image_folder(name[len("folder:"):], resolution)
    if name in OFFLINE:
        return load_offline(name, resolution, split, seed)
    raise GanlibError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}, or folder:PATH.")

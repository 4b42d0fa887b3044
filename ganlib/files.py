"""Files: atomic writes (a crash never leaves half a file) and the cache folder."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def cache_dir() -> Path:
    """$GANLIB_CACHE, else ~/.cache/ganlib: where trained metric classifiers are kept."""
    return Path(os.environ.get("GANLIB_CACHE") or Path.home() / ".cache" / "ganlib")


def atomic_save(obj, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(text: str, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

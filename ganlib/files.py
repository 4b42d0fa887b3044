"""Files: atomic writes (a crash or a full disk never leaves half a file), checksums that detect a damaged
file, and the cache folder.

`atomic_save` writes a torch archive with a sha256 of its records inside (`CHECKSUM_RECORD`); `damage`
checks it, and the CRC-32 of every record, before anything is loaded (torch.load checks neither).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch

from .errors import GanlibError

__all__ = [
    "CHECKSUM_RECORD", "PRETRAINED", "previous_path", "atomic_save", "damage", "atomic_write",
    "atomic_write_text"
]

CHECKSUM_RECORD = "ganlib.sha256"  # the record of an `atomic_save` archive that holds the sha256 of the others
PRETRAINED = Path(__file__).resolve().parent / "pretrained"  # the files shipped with ganlib: the judges'
# classifiers (written by `gancourse.evaluation.ship_judge`: trained weights depend on the machine's thread count,
# so tests and benchmarks that score with a judge need the same file everywhere) and small trained generators


def previous_path(path: str | Path) -> Path:
    """Where `atomic_save(..., keep_previous=True)` keeps the file it replaced: checkpoint.pt -> checkpoint.prev.pt."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _remove_stale_temps(path: Path) -> None:
    """Delete the temporary files of `path` that a killed save left behind (their process is gone)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2: -len(".tmp")]
        if not pid.isdigit():
            continue
        if os.name == "posix" and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
                continue  # another live process is writing it
            except ProcessLookupError:
                pass
            except OSError:
                continue
        with contextlib.suppress(OSError):  # elsewhere a file still being written cannot be deleted
            tmp.unlink()


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; other systems cannot open a folder, and need not)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _replacing(path: Path, keep_previous: bool = False):
    """Yield a temporary path beside `path`; once the body has written it: fsync it, rename it over `path`
    (with `keep_previous`, the file it replaces first becomes `previous_path(path)`) and fsync the folder.
    An OSError (disk full, no permission) becomes a one-line GanlibError and leaves `path` as it was."""
    tmp = _temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(path)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if keep_previous and path.is_file():
            previous = previous_path(path)
            _remove_stale_temps(previous)
            try:
                os.link(path, _temp_path(previous))  # a second name for the old file: no copy, no space
            except OSError:
                shutil.copyfile(path, _temp_path(previous))  # file systems without hard links
            os.replace(_temp_path(previous), previous)
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except OSError as e:
        reason = f"{e.strerror or e}" + (f": {e.filename}" if e.filename and str(e.filename) != str(tmp) else "")
        kept = f"; the {path.name} already there is kept" if path.is_file() else ""
        raise GanlibError(f"could not write {str(path)!r} ({reason}){kept}: free some disk space, or choose a "
                          f"folder you can write to.") from None
    finally:
        tmp.unlink(missing_ok=True)
        if keep_previous:
            _temp_path(previous_path(path)).unlink(missing_ok=True)


class _KeepWriteError:
    """The file object torch.save writes to: it keeps the OSError of a failed write, which torch reports as a
    bare RuntimeError ("unexpected pos")."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def _records_digest(archive: zipfile.ZipFile) -> str:
    """sha256 of the names and contents of an archive's records, `CHECKSUM_RECORD` left out. Reading a record
    to its end also checks its CRC-32 (zipfile raises BadZipFile)."""
    h = hashlib.sha256()
    for info in sorted(archive.infolist(), key=lambda i: i.filename):
        if info.filename.rsplit("/", 1)[-1] == CHECKSUM_RECORD:
            continue
        h.update(f"{info.filename}\0{info.file_size}\0".encode())
        with archive.open(info) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def atomic_save(obj, path: str | Path, keep_previous: bool = False) -> None:
    """torch.save `obj` to `path` with a sha256 of its contents inside (see `damage`), atomically and durably
    (see `_replacing`); `keep_previous`: keep the file it replaces as `previous_path(path)`."""
    path = Path(path)
    with _replacing(path, keep_previous) as tmp:
        with open(tmp, "wb") as f:
            writer = _KeepWriteError(f)
            try:
                torch.save(obj, writer)
            except RuntimeError:
                if writer.error is None:
                    raise
                raise writer.error from None
        with zipfile.ZipFile(tmp) as archive:
            digest, prefix = _records_digest(archive), archive.namelist()[0].split("/")[0]
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(f"{prefix}/{CHECKSUM_RECORD}", digest)


def damage(path: str | Path) -> str | None:
    """What is wrong with a file written by `atomic_save` (a few words), or None when it is intact: every
    record's CRC-32 and the sha256 of all records must match. A torch archive without the sha256 (written
    by torch.save itself) is checked by its CRCs alone."""
    try:
        with zipfile.ZipFile(path) as archive:
            digest = _records_digest(archive)
            stored = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == CHECKSUM_RECORD]
            if stored and archive.read(stored[0]).decode(errors="replace") != digest:
                return "its sha256 does not match the one stored in it"
    except zipfile.BadZipFile as e:
        return str(e).replace("File is not a zip file", "not a torch archive") or "not a torch archive"
    except Exception as e:  # a damaged header can fail in many ways (struct, unicode, compression type)
        return f"{type(e).__name__}: {e}"[:120]
    return None


def atomic_write(write: Callable[[BinaryIO], None], path: str | Path) -> None:
    """Write `path` atomically and durably (see `_replacing`): `write(f)` writes the whole contents to `f`, a
    binary file beside `path` that replaces it once complete (and is deleted when `write` fails)."""
    path = Path(path)
    with _replacing(path) as tmp:
        with open(tmp, "wb") as f:
            write(f)


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write `text` to `path` atomically and durably (see `_replacing`)."""
    path = Path(path)
    with _replacing(path) as tmp:
        tmp.write_text(text)

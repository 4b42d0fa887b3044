"""Running a training from the command line: the process group torchrun describes, and the run folder's lock.

Under ``torchrun``, `init_from_env` joins the process group from the environment torchrun provides (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): NCCL for tensors on GPUs, gloo for tensors on the CPU; the
training itself then goes through `ganlib.distributed`. `run_lock` keeps a second trainer out of a run folder.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
import torch.distributed as dist

from ganlib.distributed import is_initialized
from ganlib.errors import GanlibError

__all__ = ["init_from_env", "shutdown", "LOCK_FILE", "run_lock"]


def init_from_env() -> bool:
    """Join the process group torchrun describes in the environment; False (and nothing done) without it.

    Each process uses the GPU numbered LOCAL_RANK when there are GPUs.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_initialized():
        return is_initialized()
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise GanlibError(f"WORLD_SIZE is set but {', '.join(missing)} not: start several processes with "
                          f"torchrun (torchrun --standalone --nproc_per_node=N -m gancourse train ...).")
    if torch.cuda.is_available():
        local_rank = int(os.environ["LOCAL_RANK"])
        if local_rank >= torch.cuda.device_count():
            raise GanlibError(f"process {local_rank} has no GPU of its own (this machine has "
                              f"{torch.cuda.device_count()}): use --nproc_per_node={torch.cuda.device_count()} "
                              f"or fewer.")
        torch.cuda.set_device(local_rank)
        dist.init_process_group("cpu:gloo,cuda:nccl")  # NCCL for tensors on GPUs, gloo for any on the CPU
    else:
        dist.init_process_group("gloo")
    return True


def shutdown() -> None:
    """Leave the process group (after the last collective operation)."""
    if is_initialized():
        dist.destroy_process_group()



LOCK_FILE = ".lock"  # in a run folder while a trainer writes to it: the trainer's process id


@contextlib.contextmanager
def run_lock(folder: str | Path):
    """Hold `folder` (created if need be) for this process while the body runs: a file `LOCK_FILE` in it names
    this process. Another process that asks for the folder meanwhile gets a GanlibError naming this one; a
    lock left by a process that is gone (killed) is taken over. On leaving, the lock is removed, and so is
    the folder if this call created it and nothing else was written to it. An OSError when the folder cannot
    be written."""
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_FILE
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder is not None:
                raise GanlibError(f"{str(folder)!r} is in use by another trainer ({holder}; it holds "
                                  f"{LOCK_FILE} there): let it finish or stop it, or choose another --out "
                                  f"folder.") from None
            lock.unlink(missing_ok=True)  # its process is gone: take the folder over
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    try:
        yield lock
    finally:
        if _lock_pid(lock) == os.getpid():
            lock.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: a run that stopped before writing anything leaves nothing


def _lock_pid(lock: Path) -> int | None:
    """The process id written in a lock file (None: unreadable, or not a number)."""
    try:
        text = lock.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _lock_holder(lock: Path) -> str | None:
    """Who holds a lock file, in words ("pid 1234"), or None when its process is gone."""
    pid = _lock_pid(lock)
    if pid is None:  # being written this instant, or damaged: only a person can tell
        return "a lock without a process id: delete it if no trainer is running"
    if os.name == "posix" and pid != os.getpid():
        try:
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return None
        except OSError:
            pass  # it exists, under another user
    return f"pid {pid}"

"""Linux for the sandbox: system calls through ctypes (os.unshare is Python 3.12+) and the mount namespace a
jail's submission sees (`build_mounts`: everything read-only, the `Layout`'s hidden paths covered, small fresh
tmpfs scratch)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

QUOTA_MB = 64  # the submission's writable tmpfs (its files in all)

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


LIBC = _libc() if sys.platform.startswith("linux") else None


def _call(name: str, *args) -> None:
    if LIBC is None:
        raise OSError(38, f"{name} is not available here")
    if getattr(LIBC, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}: {os.strerror(errno)}")


def unshare(flags: int) -> None:
    _call("unshare", ctypes.c_int(flags))


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else os.fsencode(s)
    _call("mount", enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))


def prctl(option: int, value: int) -> bool:
    try:
        _call("prctl", ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0),
              ctypes.c_ulong(0))
        return True
    except OSError:
        return False


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux), so that nothing outlives the grader."""
    parent = os.getppid()
    if prctl(PR_SET_PDEATHSIG, signal.SIGKILL) and os.getppid() != parent:  # the parent died before the call
        os._exit(1)


def read_only(points: list[str]) -> None:
    """Remount these mount points read-only, keeping the flags a user namespace may not drop; raise OSError
    when one stays writable."""
    for point in points:
        kept = os.statvfs(point).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME)
        mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)
        if not os.statvfs(point).f_flag & MS_RDONLY:
            raise OSError(f"{point} stays writable")


def map_user(uid: int, gid: int) -> None:
    """In a new user namespace: keep our own user and group ids, as they were before it (an identity mapping)."""
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")


@dataclass
class Layout:
    """What the submission must not see or change, and where its scratch space goes."""

    hidden: list[str]  # folders and files hidden from it (an empty read-only tmpfs, or /dev/null)
    keep_visible: list[str]  # what it needs to import ganlib and torch: never hidden under a tmpfs
    scratch: str  # the job's own folder on the host: the working folder without namespaces, or when /tmp holds
    # the course and cannot be covered


def _mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4:
            points.append(fields[4].encode().decode("unicode_escape"))
    return points


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def build_mounts(layout: Layout, uid: int | None) -> str:
    """In the new mount namespace: everything read-only, the hidden paths covered, fresh tmpfs scratch.
    Returns the submission's working folder."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for point in _mount_points():
        if _inside(point, "/proc") or _inside(point, "/sys"):
            continue
        try:
            read_only([point])
        except OSError:
            pass  # e.g. a mount point hidden under another mount: checked below for what matters
    for path in ("/", *layout.keep_visible):  # the system and the course must be read-only, or there is no jail
        if not os.statvfs(path).f_flag & MS_RDONLY:
            raise OSError(f"{path} stays writable")
    tmp_free = not any(_inside(keep, "/tmp") for keep in layout.keep_visible)
    # when the course lives under /tmp, the job's own folder (inside the hidden scratch folder) stays reachable
    # as the mount point of its scratch tmpfs (below); the other jobs' folders stay hidden
    reachable = layout.keep_visible if tmp_free else [*layout.keep_visible, layout.scratch]
    for path in sorted(layout.hidden, key=lambda p: p.count("/")):  # a folder before what is inside it
        inner = [k for k in reachable if _inside(k, path)]
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                _cover(path, inner)
            elif os.path.exists(path):
                mount("/dev/null", path, None, MS_BIND)
        except OSError:
            pass
    if uid is not None:
        _expose(layout.keep_visible)
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    for path in ("/tmp", "/var/tmp", "/dev/shm") if tmp_free else ("/var/tmp", "/dev/shm"):
        if os.path.isdir(path) and not any(_inside(keep, path) for keep in layout.keep_visible):
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={QUOTA_MB}m,mode=1777")
    if tmp_free:
        work = "/tmp/work"
    else:  # the course lives under /tmp: the scratch tmpfs goes on the job's own folder instead
        mount("tmpfs", layout.scratch, "tmpfs", MS_NOSUID | MS_NODEV, f"size={QUOTA_MB}m,mode=0700{owner}")
        work = os.path.join(layout.scratch, "work")
    os.mkdir(work, 0o700)
    if uid is not None:
        os.chown(work, uid, uid)
    return work


def _cover(folder: str, keep: list[str]) -> None:
    """Hide `folder` under an empty read-only tmpfs, except the folders in `keep` inside it, which are
    bind-mounted back where they were."""
    keep = [k for k in keep if not any(other != k and _inside(k, other) for other in keep)]
    fds = {k: os.open(k, os.O_RDONLY | os.O_DIRECTORY) for k in keep}  # before the tmpfs hides them
    mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
    for k, fd in fds.items():
        os.makedirs(k, 0o755, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", k, None, MS_BIND | MS_REC)
        os.close(fd)
    mount(None, folder, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _expose(keep: list[str]) -> None:
    """Make each folder in `keep` reachable for another user id: the outermost ancestor that others may not
    enter (a home folder at mode 0700 that holds Python, say) is covered (`_cover`), keeping only those."""
    blocked: dict[str, list[str]] = {}
    for k in keep:
        closed = [str(p) for p in reversed(Path(k).parents) if str(p) != "/" and not os.stat(p).st_mode & 0o001]
        if closed:
            blocked.setdefault(closed[0], []).append(k)
    for top in blocked:
        if not any(top != other and _inside(top, other) for other in blocked):
            _cover(top, [k for other, ks in blocked.items() if _inside(other, top) for k in ks])


# ----------------------------------------------------------------------------------------------------------
# Landlock (Linux 5.13+): what a process may open, for a jail without namespaces

PR_SET_CHILD_SUBREAPER = 36
_LANDLOCK_CREATE_RULESET, _LANDLOCK_ADD_RULE, _LANDLOCK_RESTRICT_SELF = 444, 445, 446  # the same on every arch
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1, 2, 4, 8
_FS_ALL = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}  # by ABI
_FILE_ONLY = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | (1 << 14) | (1 << 15)  # rights a file (not a folder) takes


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers (0: none)."""
    if LIBC is None:
        return 0
    version = LIBC.syscall(_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(0, version)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock(read_only: list[str], writable: list[str]) -> None:
    """Restrict this process and every process it starts: files and folders may be opened only beneath the
    paths given (read and execute beneath `read_only`, anything beneath `writable`); TCP (ABI 4+), signals to
    and abstract sockets of processes outside (ABI 6+) are refused. Raises OSError when Landlock is missing."""
    abi = landlock_abi()
    if abi < 1:
        raise OSError(38, "Landlock is not available")
    every = _FS_ALL[min(abi, 5)]
    attr = _RulesetAttr(every, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = LIBC.syscall(_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        rules = [(p, _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR) for p in read_only] + [(p, every) for p in writable]
        for path, access in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # not on this machine
            try:
                if not os.path.isdir(path):
                    access &= _FILE_ONLY
                rule = _PathBeneathAttr(access, fd)
                if LIBC.syscall(_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(1), ctypes.byref(rule),
                                ctypes.c_uint32(0)) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule {path} failed")
            finally:
                os.close(fd)
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        if LIBC.syscall(_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)

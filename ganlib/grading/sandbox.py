"""The sandbox a submission runs in, and the framed, size-limited channel the trusted side talks to it through.

Process tree of one grading run (each process dies with its parent, `PR_SET_PDEATHSIG`):

    grader (the command)  ->  zygote (imports torch once; loads no student code)
      -> checker, one per submission (trusted: runs the checks, decodes what the submission sends)
        -> keeper (outside the namespaces; reports the jail's pid)
          -> jail init (pid 1 of a new pid namespace; waits for the submission and reports how it ended)
            -> submission (the student's code, confined; serves remote calls, see `remote.py`)

Confinement, where Linux allows it (probed once per run, see `probe`): new user (when not root), mount, pid,
network and IPC namespaces; in the mount namespace every file system is read-only, the course's solutions,
exercises and notebooks, the submissions, the grader's output, the private checks and the home folders are
hidden (what the submission needs to import Python, torch and ganlib is mounted back), and /tmp,
/var/tmp and /dev/shm are small fresh tmpfs (the submission's only writable places, its disk quota); a new
/proc shows only the submission's own processes. When the grader runs as root the submission also runs
under an unprivileged user id of its own (one per job slot), with `RLIMIT_NPROC`. Killing the jail's init
ends every process of the namespace, including daemons that started a new session. Without namespaces
(not Linux, or a kernel that forbids them) what remains is a session, resource limits, the user id switch
when root, and a sweep of the session's and that user id's processes at the end.
"""

from __future__ import annotations

import ctypes
import os
import re
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

FRAME = struct.Struct(">Q")
QUOTA_MB = 64  # the submission's writable tmpfs (its files in all)
SLOT_UID = 1_990_000_000  # + the job slot: the user id a submission runs under when the grader is root
MAX_PROCESSES = 256  # RLIMIT_NPROC for that user id (threads count)

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38


class ChannelClosed(Exception):
    """The other end of a channel closed (the submission crashed or was killed)."""


class ChannelTimeout(Exception):
    """A channel operation did not finish before its deadline."""


class ChannelOverflow(Exception):
    """The other end sent a message larger than allowed."""


class Channel:
    """Length-prefixed messages over a socket. The trusted side uses deadlines and a size limit on every
    read, so that a peer that stalls mid-message or sends a flood cannot hang it or fill its memory."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sock.setblocking(False)

    def send(self, data: bytes, deadline: float | None = None) -> None:
        view = memoryview(FRAME.pack(len(data)) + data)
        while view:
            self._wait(select.POLLOUT, deadline)
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise ChannelClosed() from None
            view = view[sent:]

    def recv(self, deadline: float | None = None, limit: int = 2**30) -> bytes:
        size = FRAME.unpack(self._read(FRAME.size, deadline))[0]
        if size > limit:
            raise ChannelOverflow(size)
        return self._read(size, deadline)

    def _read(self, n: int, deadline: float | None) -> bytes:
        chunks, left = [], n
        while left:
            self._wait(select.POLLIN, deadline)
            try:
                chunk = self.sock.recv(min(left, 1 << 20))
            except BlockingIOError:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise ChannelClosed()
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _wait(self, event: int, deadline: float | None) -> None:
        poller = select.poll()
        poller.register(self.sock, event)
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.time())
            if poller.poll(None if timeout is None else timeout * 1000):
                return
            if deadline is not None and time.time() >= deadline:
                raise ChannelTimeout()

    def close(self) -> None:
        self.sock.close()


# ----------------------------------------------------------------------------------------------------------
# Linux system calls through ctypes (os.unshare is Python 3.12+)


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc() if sys.platform.startswith("linux") else None


def _call(name: str, *args) -> None:
    if _LIBC is None:
        raise OSError(38, f"{name} is not available here")
    if getattr(_LIBC, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}: {os.strerror(errno)}")


def unshare(flags: int) -> None:
    _call("unshare", ctypes.c_int(flags))


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else os.fsencode(s)
    _call("mount", enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))


def _prctl(option: int, value: int) -> bool:
    try:
        _call("prctl", ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0),
              ctypes.c_ulong(0))
        return True
    except OSError:
        return False


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux), so that nothing outlives the grader."""
    parent = os.getppid()
    if _prctl(PR_SET_PDEATHSIG, signal.SIGKILL) and os.getppid() != parent:  # the parent died before the call
        os._exit(1)


# ----------------------------------------------------------------------------------------------------------
# What confinement this machine allows


@dataclass(frozen=True)
class Confinement:
    namespaces: bool  # user (when not root), mount, pid, network and IPC namespaces
    switch_user: bool  # root: the submission runs under an unprivileged user id of its own

    def describe(self) -> str:
        parts = []
        if self.namespaces:
            parts.append("namespaces (pid, mount, network" + ("" if os.geteuid() == 0 else ", user")
                         + "): read-only file systems, course solutions and other submissions hidden, no network, "
                           f"a {QUOTA_MB} MB scratch tmpfs")
        else:
            parts.append("no namespaces (not available here): the submission can read what this user can "
                         "read, and reach the network")
        if self.switch_user:
            parts.append("a separate user id per job")
        elif os.name == "posix" and os.geteuid() == 0 and not self.namespaces:
            parts.append("the grader's own user id, as Python or ganlib lies in a folder that other user ids cannot "
                         "enter (make its parent folders world-executable, chmod o+x, for a user id per job)")
        elif os.name == "posix":
            parts.append("the grader's own user id")
        return "; ".join(parts) + "; resource limits; every process it starts is killed at its end"

    @property
    def flags(self) -> int:
        user = 0 if os.geteuid() == 0 else CLONE_NEWUSER
        return user | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC


def reachable_by_others(paths: list[str]) -> bool:
    """Whether another user id may enter every folder above each of `paths` (o+x), as a submission switched to
    its own user id must, to run Python and import ganlib without the namespaces' help (`_expose`)."""
    return all(os.stat(parent).st_mode & 0o001 for path in paths for parent in Path(path).resolve().parents)


def probe(keep_visible: list[str]) -> Confinement:
    """Try the namespaces in a throw-away child (they cannot be undone in this process). GANLIB_NAMESPACES=0
    leaves them out (for a kernel where they misbehave). Without them, a root grader switches each submission
    to its own user id only when that user id can reach `keep_visible` (Python, torch, ganlib)."""
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    if _LIBC is None or not hasattr(os, "fork") or os.environ.get("GANLIB_NAMESPACES") == "0":
        return Confinement(False, root and reachable_by_others(keep_visible))
    wanted = Confinement(True, root)
    pid = os.fork()
    if pid == 0:  # what a jail needs: the namespaces, a read-only remount, a tmpfs, and /proc in the pid namespace
        code = 1
        try:
            uid, gid = os.getuid(), os.getgid()
            unshare(wanted.flags)
            if not root:
                _map_user(uid, gid)
            mount(None, "/", None, MS_REC | MS_PRIVATE)
            _read_only(["/"])
            mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m")
            init = os.fork()
            if init == 0:
                try:
                    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
                    os._exit(0)
                finally:
                    os._exit(1)
            code = os.waitstatus_to_exitcode(os.waitpid(init, 0)[1])
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return wanted if os.waitstatus_to_exitcode(status) == 0 else Confinement(False, root and reachable_by_others(
        keep_visible))


def _read_only(points: list[str]) -> None:
    """Remount these mount points read-only, keeping the flags a user namespace may not drop; raise OSError
    when one stays writable."""
    for point in points:
        kept = os.statvfs(point).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME)
        mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)
        if not os.statvfs(point).f_flag & MS_RDONLY:
            raise OSError(f"{point} stays writable")


def _map_user(uid: int, gid: int) -> None:
    """In a new user namespace: keep our own user and group ids, as they were before it (an identity mapping)."""
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")


# ----------------------------------------------------------------------------------------------------------
# Starting a jail (in the checker process)


@dataclass
class Layout:
    """What the submission must not see or change, and where its scratch space goes."""

    hidden: list[str]  # folders and files hidden from it (an empty read-only tmpfs, or /dev/null)
    keep_visible: list[str]  # what it needs to import ganlib and torch: never hidden under a tmpfs
    scratch: str  # the job's own folder on the host: the working folder without namespaces, or when /tmp holds
    # the course and cannot be covered


@dataclass
class Jail:
    channel: Channel  # to the submission
    pid: int  # the jail's init (its pid namespace) or, without namespaces, the submission's parent
    keeper: int  # the keeper, which leads the session of the jail (without namespaces: of the submission)
    status_fd: int  # the jail reports "exit <wait status>" here
    uid: int | None  # the submission's own user id, when switched
    confinement: Confinement

    def exit_status(self, wait: float = 2.0) -> int | None:
        """How the submission ended (as a wait status), or None when unknown."""
        text, deadline = b"", time.time() + wait
        while time.time() < deadline:
            ready, _, _ = select.select([self.status_fd], [], [], max(0.0, deadline - time.time()))
            if not ready:
                break
            chunk = os.read(self.status_fd, 256)
            if not chunk:
                break
            text += chunk
        for line in text.decode(errors="replace").splitlines():
            if line.startswith("exit "):
                return int(line.split()[1])
        return None

    def kill(self) -> None:
        """Kill the submission and everything it started (once; later calls do nothing)."""
        if self.channel.sock.fileno() < 0:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if not self.confinement.namespaces:
            sweep(self.keeper, self.uid)
        try:
            os.waitpid(self.keeper, 0)
        except ChildProcessError:
            pass
        self.channel.close()
        os.close(self.status_fd)


def start(slot: int, layout: Layout, confinement: Confinement, memory_mb: int, seconds: float, output_fd: int,
          serve) -> Jail:
    """Fork the jail; `serve(channel_socket, info)` runs in the confined submission process."""
    ours, theirs = socket.socketpair()
    status_r, status_w = os.pipe()
    uid = SLOT_UID + slot if confinement.switch_user else None
    keeper = os.fork()
    if keeper == 0:  # the keeper
        try:
            ours.close()
            os.close(status_r)
            die_with_parent()
            _close_other_fds({theirs.fileno(), status_w, output_fd})
            os.setsid()
            scratch = layout.scratch
            if confinement.namespaces:
                ids = os.getuid(), os.getgid()
                unshare(confinement.flags)
                if confinement.flags & CLONE_NEWUSER:
                    _map_user(*ids)
                scratch = _build_mounts(layout, uid)
            elif uid is not None:
                os.chown(scratch, uid, uid)
            init = os.fork()
            if init == 0:
                _jail_init(theirs, status_w, output_fd, scratch, uid, confinement, memory_mb, seconds, serve)
            theirs.close()
            os.write(status_w, f"pid {init}\n".encode())
            os.waitpid(init, 0)
        finally:
            os._exit(0)
    theirs.close()
    os.close(status_w)
    line = b""
    deadline = time.time() + 10
    while not line.endswith(b"\n") and time.time() < deadline:
        ready, _, _ = select.select([status_r], [], [], max(0.0, deadline - time.time()))
        chunk = os.read(status_r, 1) if ready else b""
        if not chunk:
            break
        line += chunk
    if not line.startswith(b"pid "):
        os.kill(keeper, signal.SIGKILL)
        os.waitpid(keeper, 0)
        raise OSError("the sandbox did not start")
    init = int(line.split()[1])
    return Jail(Channel(ours), init, keeper, status_r, uid, confinement)


def _jail_init(sock, status_w, output_fd, scratch, uid, confinement, memory_mb, seconds, serve) -> None:
    """pid 1 of the jail's pid namespace: mount /proc, start the submission, reap, report how it ended."""
    code = 0
    try:
        die_with_parent()
        _prctl(PR_SET_DUMPABLE, 0)  # the submission may not trace its init, which can still change the mounts
        if confinement.namespaces:
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        child = os.fork()
        if child == 0:
            try:
                die_with_parent()  # without a pid namespace nothing else would end it with the grader
                _prctl(PR_SET_DUMPABLE, 1)  # its own /proc/self stays its own (a user id switch resets this)
                os.close(status_w)
                _confine(scratch, uid, confinement, memory_mb, seconds, output_fd)
                serve(sock)
            finally:
                os._exit(70)
        sock.close()
        while True:  # reap orphans too, until the submission itself ends
            pid, status = os.waitpid(-1, 0)
            if pid == child:
                os.write(status_w, f"exit {status}\n".encode())
                break
    except BaseException:
        code = 1
    finally:
        os._exit(code)  # as init of the namespace, this kills every process left in it


def _confine(scratch: str, uid: int | None, confinement: Confinement, memory_mb: int, seconds: float,
             output_fd: int) -> None:
    """The last steps in the submission's process: folder, output, user id, limits."""
    import resource

    os.chdir(scratch)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.close(output_fd)
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)

    def limit(kind, value):
        try:
            resource.setrlimit(kind, (value, value))
        except (ValueError, OSError):
            pass

    limit(resource.RLIMIT_CORE, 0)
    limit(resource.RLIMIT_FSIZE, 16 * 2**20)
    limit(resource.RLIMIT_CPU, int(seconds) + 5)
    in_use = _address_space()
    if in_use:
        limit(resource.RLIMIT_AS, in_use + memory_mb * 2**20)
    if uid is not None:
        limit(resource.RLIMIT_NPROC, MAX_PROCESSES)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    elif confinement.namespaces:  # drop the capabilities that could undo the mounts: a nested user namespace
        ids = os.getuid(), os.getgid()
        unshare(CLONE_NEWUSER)
        _map_user(*ids)
        if _kernel() >= (5, 14):  # RLIMIT_NPROC counts per user namespace: this one holds the submission only
            limit(resource.RLIMIT_NPROC, MAX_PROCESSES)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)  # no set-user-id program gives it more rights


def _kernel() -> tuple[int, int]:
    try:
        major, minor = os.uname().release.split(".")[:2]
        return int(major), int(re.match(r"\d+", minor).group())
    except (ValueError, AttributeError):
        return (0, 0)


def _address_space() -> int:
    """Bytes of virtual memory this process maps now (Linux), or 0 when unknown."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _close_other_fds(keep: set[int]) -> None:
    for fd in sorted(int(n) for n in os.listdir("/proc/self/fd") if n.isdigit()) if os.path.isdir(
            "/proc/self/fd") else range(3, 256):
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4:
            points.append(fields[4].encode().decode("unicode_escape"))
    return points


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _build_mounts(layout: Layout, uid: int | None) -> str:
    """In the new mount namespace: everything read-only, the hidden paths covered, fresh tmpfs scratch.
    Returns the submission's working folder."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for point in _mount_points():
        if _inside(point, "/proc") or _inside(point, "/sys"):
            continue
        try:
            _read_only([point])
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


def sweep(sid: int, uid: int | None) -> None:
    """Without a pid namespace: kill every process of the submission's session, and of its user id."""
    for _ in range(3):  # processes may fork while we sweep
        for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                other = int(entry)
                same_session = os.getsid(other) == sid
                same_user = uid is not None and os.stat(f"/proc/{entry}").st_uid == uid
            except OSError:
                continue
            if same_session or same_user:
                try:
                    os.kill(other, signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.01)

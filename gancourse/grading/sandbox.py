"""The sandbox a submission runs in (the channel the trusted side talks to it through: `channel.py`; the system
calls and the mount namespace: `linux.py`).

Process tree of one grading run (each process dies with its parent, `PR_SET_PDEATHSIG`):

    grader (the command)  ->  zygote (imports torch once; loads no student code)
      -> checker, one per submission (trusted: runs the checks, decodes what the submission sends)
        -> keeper (outside the namespaces; reports the jail's pid, keeps the budget of all the submission's
           processes together (`keeper.watch`), and as a child subreaper ends whatever they leave
           (`keeper.end_descendants`))
          -> jail init (pid 1 of a new pid namespace; waits for the submission and reports how it ended)
            -> submission (the student's code, confined; serves remote calls, see `remote.py`)

Confinement, where Linux allows it (probed once per run, see `probe`): new user (when not root), mount, pid,
network and IPC namespaces; in the mount namespace every file system is read-only, the course folder (but
ganlib) and its git folders, the submissions, the grader's output, the private checks and the home folders
are hidden (what the submission needs to import Python, torch and ganlib is mounted back), and /tmp,
/var/tmp and /dev/shm are small fresh tmpfs (the submission's only writable places, its disk quota); a new
/proc shows only the submission's own processes. When the grader runs as root the submission also runs
under an unprivileged user id of its own (a fresh one per job), with `RLIMIT_NPROC`. Killing the jail's init
ends every process of the namespace, including daemons that started a new session. Without namespaces
(not Linux, a kernel or seccomp profile that forbids them, GANLIB_NAMESPACES=0) the grader refuses unless
the instructor accepts weaker isolation (`Confinement.refusal`); then Landlock limits what the submission
may open, connect to and signal (`linux.landlock`), a root grader still switches it to a fresh user id, and
the keeper's budget and end-of-job sweep hold as with namespaces.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .channel import Channel
from .keeper import CPU_CORES, MAX_PROCESSES, TICK, end_descendants, watch  # noqa: F401  (CPU_CORES, TICK: the budget)
from .linux import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    LIBC,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_REC,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS,
    QUOTA_MB,
    Layout,
    build_mounts,
    die_with_parent,
    landlock,
    landlock_abi,
    map_user,
    mount,
    prctl,
    read_only,
    unshare,
)

JOB_UIDS = range(1_990_000_000, 2_090_000_000)  # a submission's own user id, when the grader is root: one drawn at
# random for each job and not in use by any process, so that concurrent runs never share one
SYSTEM_READABLE = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/proc", "/sys", "/dev", "/opt")
# what a submission may read without namespaces (Landlock), besides Python, torch and ganlib
WEAKER_FLAG = "--weaker-isolation"
ENABLE_NAMESPACES = ("enable them (in Docker: docker run --security-opt seccomp=unconfined ...; on Ubuntu 23.10 "
                     "and later: sysctl kernel.apparmor_restrict_unprivileged_userns=0; or unset GANLIB_NAMESPACES)")


# ----------------------------------------------------------------------------------------------------------
# What confinement this machine allows


@dataclass(frozen=True)
class Confinement:
    namespaces: bool  # user (when not root), mount, pid, network and IPC namespaces
    switch_user: bool  # root: the submission runs under an unprivileged user id of its own
    landlock: bool = False  # without namespaces: Landlock limits what the submission may open
    why_not: str = ""  # why there are no namespaces

    def describe(self) -> str:
        parts = []
        if self.namespaces:
            parts.append("namespaces (pid, mount, network" + ("" if os.geteuid() == 0 else ", user")
                         + "): read-only file systems, the course folder but ganlib and gancourse, the submissions, "
                           "the grades "
                           f"and the private checks hidden, no network, a {QUOTA_MB} MB scratch tmpfs")
        else:
            parts.append(f"WEAKER ISOLATION, no namespaces ({self.why_not}): "
                         + ("Landlock lets the submission read only Python, its libraries, ganlib, gancourse and the "
                            "system's folders, and write only its own folder; no TCP; other processes of this user "
                            "visible"
                            if self.landlock else "the submission can read what its user id can read"))
        if self.switch_user:
            parts.append("a user id of its own per job")
        elif os.name == "posix" and os.geteuid() == 0 and not self.namespaces:
            parts.append("the grader's own user id, as Python or ganlib lies in a folder that other user ids cannot "
                         "enter (make its parent folders world-executable, chmod o+x, for a user id per job)")
        elif os.name == "posix":
            parts.append("the grader's own user id")
        return "; ".join(parts) + "; resource limits; every process it starts is killed at its end"

    def refusal(self) -> str | None:
        """Why the grader will not grade here without WEAKER_FLAG (None: it will), in one line."""
        if self.namespaces:
            return None
        return (f"the grader confines submissions with Linux namespaces, which are not available ({self.why_not}): "
                f"{ENABLE_NAMESPACES}, or pass {WEAKER_FLAG} to grade with Landlock and a process sweep only")

    def weaker_refusal(self) -> str | None:
        """Why even WEAKER_FLAG cannot grade here (None: it can)."""
        if self.namespaces or self.landlock:
            return None
        return (f"neither Linux namespaces ({self.why_not}) nor Landlock (Linux 6.12 or later; 5.13 when root) is "
                f"available, so a submission could read the solutions, the other submissions and the grades, or "
                f"signal the grader: {ENABLE_NAMESPACES}")

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

    def fallback(why: str) -> Confinement:
        switch = root and reachable_by_others(keep_visible) and _can_switch_user()
        # Landlock's file rules, and (ABI 6, Linux 6.12) its scoped signals when the submission keeps our user id
        return Confinement(False, switch, landlock_abi() >= (1 if switch else 6), why)

    if LIBC is None or not hasattr(os, "fork"):
        return fallback("not Linux")
    if os.environ.get("GANLIB_NAMESPACES") == "0":
        return fallback("GANLIB_NAMESPACES=0 turned them off")
    wanted = Confinement(True, root)
    pid = os.fork()
    if pid == 0:  # what a jail needs: the namespaces, a read-only remount, a tmpfs, and /proc in the pid namespace
        code = 1
        try:
            uid, gid = os.getuid(), os.getgid()
            unshare(wanted.flags)
            if not root:
                map_user(uid, gid)
            mount(None, "/", None, MS_REC | MS_PRIVATE)
            read_only(["/"])
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
    if os.waitstatus_to_exitcode(status) != 0:
        return fallback("the kernel or a seccomp profile forbids them")
    return wanted if not root or _can_switch_user() else Confinement(True, False)


def _can_switch_user() -> bool:
    """Whether a child can take a job's user id (not in a user namespace that maps only root, say)."""
    pid = os.fork()
    if pid == 0:
        try:
            uid = job_uid()
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os._exit(0)
        finally:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def job_uid() -> int:
    """A user id for one job: drawn at random from JOB_UIDS and owned by no running process."""
    import random

    busy = set()
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        try:
            busy.add(os.stat(f"/proc/{entry}").st_uid) if entry.isdigit() else None
        except OSError:
            pass
    while True:
        uid = random.SystemRandom().choice(JOB_UIDS)
        if uid not in busy:
            return uid


# ----------------------------------------------------------------------------------------------------------
# Starting a jail (in the checker process)


@dataclass
class Jail:
    channel: Channel  # to the submission
    pid: int  # the jail's init (its pid namespace) or, without namespaces, the submission's parent
    keeper: int  # the keeper, which leads the session of the jail (without namespaces: of the submission)
    status_fd: int  # the jail reports "exit <wait status>" here
    uid: int | None  # the submission's own user id, when switched
    confinement: Confinement
    over: str = ""  # what budget the keeper stopped the submission for, once `exit_status` has read it

    def exit_status(self, wait: float = 2.0) -> int | None:
        """How the submission ended (as a wait status), or None when unknown (`over` then may say why)."""
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
            if line.startswith("over "):
                self.over = line[5:]
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
        try:
            os.waitpid(self.keeper, 0)  # the keeper ends whatever is left below it first (`end_descendants`)
        except ChildProcessError:
            pass
        if not self.confinement.namespaces:
            sweep(self.keeper, self.uid)
        self.channel.close()
        os.close(self.status_fd)


def start(layout: Layout, confinement: Confinement, memory_mb: int, seconds: float, output_fd: int,
          serve) -> Jail:
    """Fork the jail; `serve(channel_socket, info)` runs in the confined submission process."""
    ours, theirs = socket.socketpair()
    status_r, status_w = os.pipe()
    uid = job_uid() if confinement.switch_user else None
    keeper = os.fork()
    if keeper == 0:  # the keeper
        try:
            ours.close()
            os.close(status_r)
            die_with_parent()
            _close_other_fds({theirs.fileno(), status_w, output_fd})
            os.setsid()
            prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of the submission (daemons) become the keeper's children
            scratch = layout.scratch
            if confinement.namespaces:
                ids = os.getuid(), os.getgid()
                unshare(confinement.flags)
                if confinement.flags & CLONE_NEWUSER:
                    map_user(*ids)
                scratch = build_mounts(layout, uid)
            elif uid is not None:
                os.chown(scratch, uid, uid)
            proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)  # this pid namespace's, before init mounts its own
            init = os.fork()
            if init == 0:
                os.close(proc)
                _jail_init(theirs, status_w, output_fd, scratch, uid, confinement, memory_mb, seconds, serve,
                           layout.keep_visible)
            theirs.close()
            os.write(status_w, f"pid {init}\n".encode())
            watch(init, memory_mb, status_w, proc)
            end_descendants()
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


def _jail_init(sock, status_w, output_fd, scratch, uid, confinement, memory_mb, seconds, serve,
               keep_visible) -> None:
    """pid 1 of the jail's pid namespace: mount /proc, start the submission, reap, report how it ended."""
    code = 0
    try:
        die_with_parent()
        prctl(PR_SET_DUMPABLE, 0)  # the submission may not trace its init, which can still change the mounts
        if confinement.namespaces:
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        child = os.fork()
        if child == 0:
            try:
                die_with_parent()  # without a pid namespace nothing else would end it with the grader
                prctl(PR_SET_DUMPABLE, 1)  # its own /proc/self stays its own (a user id switch resets this)
                os.close(status_w)
                _confine(scratch, uid, confinement, memory_mb, seconds, output_fd, keep_visible)
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
             output_fd: int, keep_visible: list[str]) -> None:
    """The last steps in the submission's process: folder, output, user id, limits, and without namespaces
    Landlock's list of what it may open."""
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
        map_user(*ids)
        if _kernel() >= (5, 14):  # RLIMIT_NPROC counts per user namespace: this one holds the submission only
            limit(resource.RLIMIT_NPROC, MAX_PROCESSES)
    if not confinement.namespaces and confinement.landlock:
        landlock([*SYSTEM_READABLE, *keep_visible], [scratch, os.devnull])
    prctl(PR_SET_NO_NEW_PRIVS, 1)  # no set-user-id program gives it more rights


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

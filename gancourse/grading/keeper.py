"""The keeper's side of a submission's budget: the processes of one submission taken together (resource limits
are per process), watched from outside through /proc, and ended, all of them, when it finishes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

MAX_PROCESSES = 256  # RLIMIT_NPROC for that user id (threads count), and the processes of one submission in all
CPU_CORES = 1.0  # what one submission's processes together may use, averaged over each TICK (the keeper stops them
# for the excess), so that a submission running many busy processes slows no other submission down
TICK = 0.05  # seconds between the keeper's looks at a submission's processes


def watch(init: int, memory_mb: int, status_w: int, proc: int) -> None:
    """The keeper's loop while the jail runs, the budget of the submission's processes taken together (resource
    limits are per process): at most CPU_CORES (all of them are stopped for the excess of each TICK), at most
    MAX_PROCESSES processes, and at most `memory_mb` of memory beyond what they held at the start (proportional
    set size, so that pages shared after a fork count once). Over the process or memory budget, the jail is
    killed and the keeper says why on `status_w`. `proc`: a folder descriptor of the keeper's own /proc."""
    me, hz = os.getpid(), os.sysconf("SC_CLK_TCK")
    baseline, last_cpu, last_time, tick = None, None, time.monotonic(), 0
    while os.waitpid(init, os.WNOHANG)[0] == 0:
        time.sleep(TICK)
        pids = _descendants(me, proc)
        cpu = sum(_cpu_ticks(pid, proc) for pid in pids) / hz
        excess = 0.0 if last_cpu is None else (cpu - last_cpu) / CPU_CORES - (time.monotonic() - last_time)
        if excess > 0:
            _signal(pids, signal.SIGSTOP)
            time.sleep(min(excess, 1.0))
            _signal(pids, signal.SIGCONT)
        last_cpu, last_time = cpu, time.monotonic()
        over = f"started more than {MAX_PROCESSES} processes" if len(pids) > MAX_PROCESSES else ""
        if tick % 5 == 0:
            memory = sum(_pss(pid, proc) for pid in pids)
            baseline = memory if baseline is None else baseline
            if memory - baseline > memory_mb * 2**20:
                over = f"used more than {memory_mb} MB of memory together (--memory)"
        tick += 1
        if over:
            os.write(status_w, f"over {over}\n".encode())
            os.kill(init, signal.SIGKILL)
            os.waitpid(init, 0)
            return


def _read(proc: int, path: str) -> str:
    """A file under the /proc that the folder descriptor `proc` holds."""
    fd = os.open(path, os.O_RDONLY, dir_fd=proc)
    with os.fdopen(fd, "rb") as f:
        return f.read().decode(errors="replace")


def _descendants(root: int, proc: int) -> list[int]:
    """Every process below `root` (from /proc's lists of each thread's children)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        try:
            fd = os.open(f"{pid}/task", os.O_RDONLY | os.O_DIRECTORY, dir_fd=proc)
        except OSError:
            continue
        try:
            tasks = os.listdir(fd)
        finally:
            os.close(fd)
        for task in tasks:
            try:
                kids = [int(k) for k in _read(proc, f"{pid}/task/{task}/children").split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def _cpu_ticks(pid: int, proc: int) -> int:
    """CPU time of a process and its reaped children, in clock ticks (0 when it is gone)."""
    try:
        fields = _read(proc, f"{pid}/stat").rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    except (OSError, IndexError, ValueError):
        return 0


def _pss(pid: int, proc: int) -> int:
    """A process's proportional set size in bytes (0 when it is gone or not readable)."""
    try:
        for line in _read(proc, f"{pid}/smaps_rollup").splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def end_descendants() -> None:
    """In the keeper, a child subreaper: kill every process below it (orphaned daemons are re-parented to it)
    until it has no child left, so that nothing the submission started outlives its grading."""
    me = os.getpid()
    while True:
        for pid in _children(me):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return
        time.sleep(0.005)


def _children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        try:
            stat = Path(f"/proc/{entry}/stat").read_text() if entry.isdigit() else ""
        except OSError:
            continue
        if stat and int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append(int(entry))
    return found

"""Running submissions: the zygote that forks a trusted checker per submission, the checker (which starts the
submission's jail, then runs the checks on remote calls and computes the verdicts), and the scheduler in the
grader's process that keeps `jobs` checkers busy."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from ganlib.errors import first_line

from . import sandbox
from .channel import Channel, ChannelClosed, ChannelTimeout
from .chapters import Chapter, PrivateChecks, columns
from .limits import alarm
from .report import Graded, Outcome
from .submissions import Submission, read_bytes

DEFAULT_TIMEOUT = 60.0  # seconds per submission
DEFAULT_MEMORY_MB = 2048  # what a submission may allocate beyond the imported libraries
CHECKER_MARGIN = 20.0  # seconds a checker may take beyond the submission's limit before the grader kills it, and
# the trusted side's own work on one exercise beyond that exercise's share of the limit before it stops the check


class CheckerBusy(BaseException):
    """The trusted side's own work on one exercise ran past its deadline (not the submission's time)."""
ZYGOTE_START = 300.0  # seconds the zygote may take to import torch


# ----------------------------------------------------------------------------------------------------------
# The checker: one per submission, trusted


def check_submission(spec: dict, confinement: sandbox.Confinement) -> dict:
    """Grade one submission (in the checker process): start its jail, define its code there, run every check
    here on remote calls. Returns the fields of its `Graded`."""
    from .. import checks
    from . import remote

    started = time.time()
    timeout = spec["timeout"]
    deadline = started + timeout
    job = Path(spec["job"])
    output = job / "output.txt"
    out_fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    layout = sandbox.Layout(spec["hidden"], spec["keep_visible"], str(job))
    try:
        jail = sandbox.start(layout, confinement, spec["memory_mb"], timeout, out_fd, remote.serve)
    finally:
        os.close(out_fd)
    import torch

    torch.set_num_threads(1)
    os.environ.pop("GANLIB_STRICT_CHECKS", None)  # grading wants every check's result, not an exception
    extra = PrivateChecks.load(spec["private"]).checks if spec["private"] else {}  # after the jail's fork
    exercises = [(name, call) for name, call in spec["exercises"]]
    phases = [(name, call, checks.CHECKS[name]) for name, call in exercises]
    phases += [(f"extra:{name}", call, extra[name]) for name, call in exercises if name in extra]
    link = remote.Remote(jail.channel, deadline)
    notes = list(spec["notes"])
    outcomes: list[Outcome] = []
    why = None

    def ended() -> str:
        """Why the submission's process is gone, for its feedback."""
        if link.gone == "killed":
            return f"the submission's time limit ({timeout:g} s) ran out"
        if link.gone and link.gone.startswith("refused: "):
            return f"the grader refused a reply of the submission ({link.gone[9:]}) and stopped it"
        status = jail.exit_status()
        if jail.over:
            return f"the submission's processes {jail.over} and were stopped"
        if status is None:
            return "the grading process ended for an unknown reason"
        if os.WIFSIGNALED(status):
            try:
                name = signal.Signals(os.WTERMSIG(status)).name
            except ValueError:
                name = str(os.WTERMSIG(status))
            return f"the grading process was killed by signal {name} (a crash, or the memory limit)"
        code = os.waitstatus_to_exitcode(status)
        return f"the grading process ended with exit code {code} (does the code call exit()?)"

    try:
        defined = _defined(link.ask(("define", spec["cells"], [call for _, call in exercises], deadline,
                                     1 + len(exercises))))
        notes += defined["notes"]
    except BaseException:  # gone, or a reply no honest submission sends
        if link.gone != "closed":
            jail.kill()
        why, defined = ended(), None
    for k, (column, call, check) in enumerate(phases):
        start = time.time()
        if why is not None:
            outcomes.append(Outcome(column, False, f"not run: {why} before this exercise was checked."))
            continue
        try:
            share = max(0.01, (deadline - 1.0 - time.time()) / (len(phases) - k))
            link.begin(time.time() + share)
            with alarm(time.time() + share + CHECKER_MARGIN, CheckerBusy):
                passed, message = _check_one(check, call, link, defined)
        except remote.TimeUp as e:
            passed, message = False, (f"timeout: did not finish within its share of the time limit ({e.args[0]:.1f} "
                                      f"s); look for an endless loop, or far more computation than the exercise "
                                      f"needs.")
        except remote.SubmissionGone:
            if link.gone != "closed":
                jail.kill()
            why = ended()
            kind = "timeout" if link.gone == "killed" else "crashed"
            hint = "; look for an endless loop" if link.gone == "killed" else ""
            passed, message = False, f"{kind}: {why} while this exercise was being checked{hint}."
        except SystemExit as e:
            passed, message = False, f"your code called exit() (SystemExit {e.code}): an exercise must return."
        except CheckerBusy:
            passed, message = False, (f"the check stopped: the grader's own work on this exercise took more than "
                                      f"{CHECKER_MARGIN:g} s beyond its share of the time limit (a loaded machine?); "
                                      f"grade it again, with fewer --jobs.")
        except BaseException as e:  # a failure of the check itself
            passed, message = False, f"the check stopped: {type(e).__name__}: {first_line(e)}"
        outcomes.append(Outcome(column, passed, message, round(time.time() - start, 3)))
    printed = link.finish() if why is None else None
    if why is not None and link.gone != "killed":
        notes.append(f"grading stopped early: {why}.")
    jail.kill()
    try:
        head = read_bytes(output, 16 * 2**20)
    except OSError:
        head = b""
    killed = link.gone == "killed"
    timed_out = killed or any(o.message.startswith("timeout") for o in outcomes)
    status = "timeout" if timed_out else "ok" if why is None else "crashed"
    return dict(student=spec["student"], notebook=spec["notebook"], status=status,
                outcomes=[vars(o) for o in outcomes], notes=notes, output=head[:remote.OUTPUT_KEPT].decode(
                    "utf-8", errors="replace"), output_chars=printed if printed is not None else len(head),
                seconds=time.time() - started, sha256=spec["sha256"])


def _defined(reply: dict) -> dict:
    """The define reply of a submission, each field checked (it comes from the student's process)."""
    text = lambda v: str(v)[:500]
    listed = lambda v: v if isinstance(v, list) else []
    mapped = lambda v: v if isinstance(v, dict) else {}
    targets = {}
    for call, found in mapped(reply.get("targets")).items():
        if isinstance(found, list) and found and found[0] in ("ok", "missing", "error"):
            targets[call] = [found[0]] + [text(x) for x in found[1:2]]
    return {"notes": [text(n) for n in listed(reply.get("notes"))[:50]], "targets": targets,
            "broken": {text(k): text(v) for k, v in list(mapped(reply.get("broken")).items())[:50]},
            "defined": [text(d) for d in listed(reply.get("defined"))[:500]]}


def _check_one(check: Callable, call: str, link, defined: dict) -> tuple[bool, str]:
    """Run the check on the submission's `call` (e.g. its `train_step`), called remotely."""
    from . import remote

    found = defined["targets"].get(call, ["error", "not defined"])
    if found[0] == "missing":
        return False, remote.missing_message(found[1] if len(found) > 1 else call, defined["broken"],
                                             defined["defined"])
    if found[0] == "error":
        return False, f"`{call}` could not be evaluated: {found[1] if len(found) > 1 else '?'}"
    result = check(remote.RemoteFunction(link, call))
    passed, message = (result, "passed." if result else "failed.") if isinstance(result, bool) else (
        bool(result.passed), str(result.message))
    if not passed and "raised NameError" in message:
        message += (" The grader runs each exercise with only the notebook's imports, functions, classes and "
                    "constants: compute anything else inside the function, or take it as an argument.")
    return passed, message


# ----------------------------------------------------------------------------------------------------------
# The zygote: imports torch and the checks once, then forks a checker per submission


def zygote(control_fd: int) -> None:
    """Entry point of the zygote process (`python -c ...`, started by `Zygote.start`)."""
    control = socket.socket(fileno=control_fd)
    sandbox.die_with_parent()
    import numpy  # noqa: F401  what every submission imports anyway
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401  torch.optim imports it on first use: once here, not in every child

    from .. import checks  # noqa: F401
    from . import remote  # noqa: F401

    confinement = sandbox.probe(imported_lazily())
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # checkers are reaped by the kernel
    Channel(control).send(json.dumps(list(vars(confinement).values())).encode())
    control.setblocking(True)
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(control, 16, 1)
        except OSError:
            os._exit(0)
        if not fds:
            os._exit(0)  # the grader closed the control socket
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            control.close()
            _checker(fds[0], confinement)
        os.close(fds[0])


def _checker(fd: int, confinement: sandbox.Confinement) -> None:
    code = 0
    try:
        sandbox.die_with_parent()
        channel = Channel(socket.socket(fileno=fd))
        channel.send(json.dumps({"pid": os.getpid()}).encode())
        spec = json.loads(channel.recv())
        channel.send(json.dumps({"result": check_submission(spec, confinement)}).encode())
    except BaseException:  # a fault of the grader itself: say where, the grader reports the submission as crashed
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


class Zygote:
    def __init__(self):
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])  # the zygote imports this very gancourse
        env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
        code = "import sys; from gancourse.grading.runner import zygote; zygote(int(sys.argv[1]))"
        self.process = subprocess.Popen([sys.executable, "-c", code, str(theirs.fileno())], pass_fds=[theirs.fileno()],
                                        env=env, stdin=subprocess.DEVNULL)
        theirs.close()
        self.control = ours
        try:
            flags = json.loads(Channel(ours).recv(time.time() + ZYGOTE_START, 1024))
        except (ChannelClosed, ChannelTimeout, ValueError):
            self.stop()
            from ganlib.errors import GanlibError

            raise GanlibError("the grading server did not start (does `python -c 'import torch'` work?).") from None
        ours.setblocking(True)
        self.confinement = sandbox.Confinement(*flags)

    def fork(self) -> tuple[Channel, int]:
        """A new checker: returns the channel to it and its pid."""
        ours, theirs = socket.socketpair()
        socket.send_fds(self.control, [b"j"], [theirs.fileno()])
        theirs.close()
        channel = Channel(ours)
        pid = json.loads(channel.recv(time.time() + 30, 1024))["pid"]
        return channel, pid

    def stop(self) -> None:
        self.control.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# ----------------------------------------------------------------------------------------------------------
# The scheduler


def hidden_paths(hidden: tuple[Path, ...], private: Path | None, scratch: Path) -> list[str]:
    """What no submission may see: the course's folder (the current folder and the one that holds ganlib) but
    its two packages, ganlib and gancourse (its solutions, exercises, notebooks, tests, caches and git history,
    wherever the history lies), the submissions, the grader's output, the private checks and the other jobs'
    folders, and the home folders."""
    course = {Path.cwd().resolve(), Path(__file__).resolve().parents[2]}
    system = Path(sys.base_prefix).resolve()
    paths = [root for root in course if root != Path("/") and root not in system.parents and root != system]
    paths += [git for root in course for git in git_dirs(root)]
    paths += [*hidden, *(p.parent for p in hidden if p.suffix == ".csv"), scratch]  # the CSV's folder: earlier grades
    paths += [private, private.parent] if private else []  # the folder too: other private material
    paths += [Path.home(), Path("/home"), Path("/root")]  # keys, mail, other courses; Python and the course
    return sorted({str(p.resolve()) for p in paths})  # stay visible when inside (see sandbox._cover)


def git_dirs(root: Path) -> list[Path]:
    """The git folders of a working tree at `root`: `.git`, or where a `.git` file points (a worktree's own
    folder and the repository's common folder, which hold the whole history)."""
    dot = root / ".git"
    if not dot.is_file():
        return [dot] if dot.is_dir() else []
    try:
        text = dot.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return []
    if not text.startswith("gitdir:"):
        return []
    own = (root / text[len("gitdir:"):].strip()).resolve()
    found = [own]
    try:
        found.append((own / (own / "commondir").read_text().strip()).resolve())
    except OSError:
        pass
    return found


def keep_visible() -> list[str]:
    """What a submission needs in order to import ganlib, gancourse, torch and numpy."""
    import numpy
    import torch

    import ganlib

    dirs = {sys.prefix, sys.base_prefix, str(Path(__file__).resolve().parents[1])}
    dirs |= {str(Path(m.__file__).resolve().parents[1]) for m in (torch, numpy)}
    dirs.add(str(Path(ganlib.__file__).resolve().parent))
    return sorted(dirs)


def imported_lazily() -> list[str]:
    """The folders a submission still reads modules from after the fork (the environment's packages and ganlib);
    the base interpreter's own library is loaded by then."""
    return [p for p in keep_visible() if p != str(Path(sys.base_prefix).resolve()) or sys.base_prefix == sys.prefix]


def run(submissions: list[tuple[Submission, Chapter]], timeout: float = DEFAULT_TIMEOUT, jobs: int | None = None,
        memory_mb: int = DEFAULT_MEMORY_MB, private: PrivateChecks | None = None, hidden: tuple[Path, ...] = (),
        on_done: Callable[[Graded], None] | None = None, log: Callable[[str], None] = lambda _: None) -> list[Graded]:
    """Grade each (submission, chapter) in a checker of its own, `jobs` at a time; results in order. `hidden`:
    the submissions folder and the grader's output, which no submission may see (the course's solutions,
    the private checks and the other jobs are hidden anyway)."""
    import select

    jobs = max(1, jobs or os.cpu_count() or 1)
    on_done = on_done or (lambda _: None)
    results: list[Graded | None] = [None] * len(submissions)
    pending = list(enumerate(submissions))[::-1]
    running: dict = {}  # socket -> (index, channel, pid, backstop)
    scratch = Path(tempfile.mkdtemp(prefix="ganlib-grading-"))
    os.chmod(scratch, 0o711)  # a job's own folder is reachable by its user id; the others are not
    zygote = None
    try:
        while pending or running:
            while pending and len(running) < jobs:
                i, (sub, chapter) = pending.pop()
                if sub.problem:
                    results[i] = not_run(sub, chapter, private)
                    on_done(results[i])
                    continue
                if zygote is None:
                    zygote = Zygote()
                    log(f"confinement: {zygote.confinement.describe()}")
                job = scratch / f"{i:04d}"
                job.mkdir(mode=0o700)
                spec = dict(student=sub.student, notebook=sub.shown, sha256=sub.sha256, notes=list(sub.notes),
                            cells=sub.cells, exercises=[(e.name, e.call) for e in chapter.exercises],
                            private=str(private.path) if private else None, job=str(job),
                            timeout=timeout, memory_mb=memory_mb, keep_visible=keep_visible(),
                            hidden=hidden_paths(hidden, private.path if private else None, scratch))
                channel, pid = zygote.fork()
                channel.send(json.dumps(spec).encode())
                running[channel.sock] = (i, channel, pid, time.time() + timeout + CHECKER_MARGIN)
            if not running:
                continue
            soonest = min(r[3] for r in running.values())
            ready, _, _ = select.select(list(running), [], [], max(0.0, soonest - time.time()))
            for sock in list(running):
                i, channel, pid, backstop = running[sock]
                if sock not in ready and time.time() < backstop:
                    continue
                del running[sock]
                try:
                    message = json.loads(channel.recv(time.time() + 10)) if sock in ready else {}
                except (ChannelClosed, ChannelTimeout, ValueError):
                    message = {}
                if "result" not in message:
                    _kill(pid)  # a checker that sent its result has ended on its own
                channel.close()
                shutil.rmtree(scratch / f"{i:04d}", ignore_errors=True)
                if "result" in message:
                    r = message["result"]
                    results[i] = Graded(**{**r, "outcomes": [Outcome(**o) for o in r["outcomes"]]})
                elif sock in ready:
                    results[i] = not_run(*submissions[i], private, "crashed",
                                         "the grader's checker process ended without a result (its error is in the "
                                         "grader's output); grade it again.")
                else:
                    results[i] = not_run(*submissions[i], private, "timeout",
                                         f"the grader's checker was still busy {timeout + CHECKER_MARGIN:g} s after "
                                         f"it started (the time limit plus {CHECKER_MARGIN:g} s) and was stopped.")
                results[i].seconds = time.time() - (backstop - timeout - CHECKER_MARGIN)
                on_done(results[i])
    finally:
        for _, _, pid, _ in running.values():
            _kill(pid)
        if zygote is not None:
            zygote.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def _kill(pid: int) -> None:
    """Kill a checker (its jail dies with it)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def not_run(sub: Submission, chapter: Chapter, private: PrivateChecks | None, status: str | None = None,
            why: str | None = None) -> Graded:
    status = status or ("missing" if sub.path is None else "invalid")
    why = why or sub.problem
    outcomes = [Outcome(c, False, "not graded: " + why) for c in columns(chapter, private)]
    return Graded(sub.student, sub.shown, status, outcomes, list(sub.notes), sha256=sub.sha256)

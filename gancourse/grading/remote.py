"""Remote calls: the submission's side (`serve`: define its functions, call them on request) and the trusted side
(`Remote`, `RemoteFunction`), which calls them as if they were local. What is defined comes from `extraction`,
how values travel from `codec`, through a `channel.Channel`, under the `limits`.

A check is run by the trusted checker process with `fn` replaced by a `RemoteFunction`. Calling it pickles
the arguments (tensors, modules, optimizers, generators, lists, numbers: whatever the check chose) to the
submission's process, which calls the student's function and sends back the result and the state of every
mutable argument (parameters and their .grad, buffers, optimizer state, numeric attributes of modules,
generator states, tensors changed in place, torch's global random state), encoded as tensors and plain
values only. The trusted side reads it with `torch.load(weights_only=True)` under a size limit, never by
unpickling, and writes the states back into its own objects, so that in-place updates look exactly as if
the function had run locally. A result that carries gradients keeps its autograd graph in the submission:
`.backward()` on the trusted side sends the output gradients there and gets back those of the inputs and
parameters (`_RemoteGraph`). Exceptions come back as (type name, message, the student's cell and line) and
are raised again as the same built-in type, or `StudentError`.
"""

from __future__ import annotations

import builtins
import difflib
import io
import os
import pickle
import socket
import sys
import time

import torch

from ganlib.errors import first_line

from .channel import FRAME, Channel, ChannelClosed, ChannelOverflow, ChannelTimeout
from .chapters import PRIVATE_MODULE_PREFIX
from .codec import (
    BadReply,
    capture,
    decode,
    encode,
    grad_leaves,
    mutable_objects,
    plain,
    rebuild,
    restore,
    same_tensor,
)
from .codec import Opaque as Opaque  # what a check gets back in place of a value that is not transferred
from .extraction import define
from .limits import MESSAGE_LIMIT, OUTPUT_KEPT, TEXT_LIMIT, TimeUp, alarm


class SubmissionGone(BaseException):
    """The submission's process ended or was killed while a check waited for it."""


class StudentError(Exception):
    """An exception of a type that is not built in, raised by the student's code (its name is kept)."""


class NotTransferable(BaseException):
    """A check passed the student's function an object of a class the submission's process cannot import
    (one defined in the private checks' own file). Not an Exception: the check stops, with this message."""


class _ArgumentPickler(pickle.Pickler):
    """Pickles a call's arguments; refuses objects of classes defined in the private checks' file, which
    the submission must not see (and could not import)."""

    def reducer_override(self, obj):
        module = getattr(type(obj), "__module__", "") or ""
        if module.startswith(PRIVATE_MODULE_PREFIX):
            raise NotTransferable(f"a private check passes a {type(obj).__name__}, a class of its own file, to the "
                                  f"student's function: pass torch, numpy, ganlib or built-in types only.")
        return NotImplemented


def _pickled(value) -> bytes:
    buffer = io.BytesIO()
    _ArgumentPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------------------
# The submission's side


class _CappedOutput(io.TextIOBase):
    """sys.stdout and sys.stderr of a submission: keeps the first OUTPUT_KEPT characters, counts the rest."""

    def __init__(self, stream):
        self.stream, self.chars = stream, 0

    def write(self, s: str) -> int:
        room = OUTPUT_KEPT - self.chars
        if room > 0:
            self.stream.write(s[:room])
        self.chars += len(s)
        return len(s)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return False


def _send(sock: socket.socket, reply: dict) -> None:
    buffer = io.BytesIO()
    torch.save(reply, buffer)
    data = buffer.getvalue()
    sock.sendall(FRAME.pack(len(data)) + data)


def _recv(sock: socket.socket):
    def exactly(n):
        parts = []
        while n:
            part = sock.recv(min(n, 1 << 20))
            if not part:
                os._exit(0)  # the checker went away
            parts.append(part)
            n -= len(part)
        return b"".join(parts)

    return pickle.loads(exactly(FRAME.unpack(exactly(FRAME.size))[0]))  # from the trusted side only


def _error_reply(e: BaseException) -> dict:
    from ..checks.core import _student_frame

    name = type(e).__name__
    message = str(e.code) if isinstance(e, SystemExit) else str(e)
    return {"kind": "error", "type": name, "message": message[:TEXT_LIMIT], "frame": _student_frame(e)[:TEXT_LIMIT]}


def serve(sock: socket.socket) -> None:
    """The submission process's loop: answer the checker's requests until it says it is done."""
    from ganlib.env import seed_everything

    sock.setblocking(True)
    out = _CappedOutput(os.fdopen(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False))
    sys.stdin = open(os.devnull)
    sys.stdout = sys.stderr = out
    keep = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    os.environ.clear()
    os.environ.update(env, HOME=os.getcwd(), TMPDIR=os.getcwd(), GANLIB_PROFILE="smoke", GANLIB_OFFLINE="1",
                      MPLBACKEND="Agg", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                      OPENBLAS_NUM_THREADS="1", MPLCONFIGDIR=os.getcwd())
    sys.argv = ["submission"]
    torch.set_num_threads(1)
    seed_everything(0)
    targets, graphs = {}, {}
    server = os.getpid()
    while True:
        request = _recv(sock)
        op = request[0]
        if op == "define":
            _, cells, calls, deadline, parts = request
            reply = _define_reply(cells, calls, deadline, parts, targets)
        elif op == "call":
            reply = _call_reply(targets, graphs, *request[1:])
        elif op == "backward":
            reply = _backward_reply(graphs, *request[1:])
        elif op == "release":
            graphs.clear()
            reply = {"kind": "ok"}
        else:  # "done"
            _send(sock, {"kind": "done", "printed": out.chars})
            sys.stdout.flush()
            os._exit(0)  # no atexit handlers, no waiting for threads the submission started
        if os.getpid() != server:  # a process the student's code forked, back in this loop: not a server
            os._exit(0)
        _send(sock, reply)


def _define_reply(cells, calls, deadline, parts, targets) -> dict:
    try:
        module, notes, broken = define(cells, calls, deadline, parts)
    except Exception as e:  # e.g. code nested too deeply for the parser
        module, notes, broken = None, [f"the grader could not read the notebook's code ({type(e).__name__})."], {}
    found = {}
    for call in calls:
        if module is None:
            found[call] = ["error", "the grader could not read the notebook's code."]
            continue
        try:
            targets[call] = eval(compile(call, "<grader>", "eval"), module.__dict__)
            found[call] = ["ok"]
        except NameError as e:
            found[call] = ["missing", str(getattr(e, "name", None) or call)]
        except BaseException as e:
            found[call] = ["error", f"{type(e).__name__}: {first_line(e)}"]
    defined = [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
               and getattr(v, "__module__", None) == "submission"] if module is not None else []
    return {"kind": "defined", "notes": [str(n)[:TEXT_LIMIT] for n in notes[:50]], "targets": found,
            "broken": {str(k)[:200]: str(v)[:TEXT_LIMIT] for k, v in list(broken.items())[:50]},
            "defined": [str(d)[:200] for d in defined[:500]]}


def _call_reply(targets, graphs, call, payload, alarm_at) -> dict:
    args, kwargs, objects, states, leaves, grad_enabled, rng = pickle.loads(payload)  # from the trusted side
    for obj, state in zip(objects, states):
        restore(obj, state)
    torch.set_rng_state(rng)
    tensors: list[torch.Tensor] = []
    try:
        with alarm(alarm_at), torch.set_grad_enabled(grad_enabled):
            result = targets[call](*args, **kwargs)
            value = encode(result, tensors)  # on the exercise's time too: a huge result costs its share only
    except TimeUp:
        return {"kind": "timeout"}
    except BaseException as e:
        return _error_reply(e)
    outputs = [k for k, t in enumerate(tensors) if t.requires_grad]
    handle = None
    if outputs and any(t.requires_grad for t in leaves):
        handle = len(graphs)
        graphs[handle] = ([tensors[k] for k in outputs], leaves, objects)
    return {"kind": "result", "value": value, "tensors": [plain(t) for t in tensors], "outputs": outputs,
            "handle": handle, "states": [capture(obj) for obj in objects], "rng": torch.get_rng_state()}


def _backward_reply(graphs, handle, grads, alarm_at) -> dict:
    outputs, leaves, objects = graphs[handle]
    wanted = [t for t in leaves if t.requires_grad]
    try:
        with alarm(alarm_at):
            found = torch.autograd.grad(outputs, wanted, grads, allow_unused=True) if wanted else []
    except TimeUp:
        return {"kind": "timeout"}
    except BaseException as e:
        return _error_reply(e)
    by_leaf = dict(zip(map(id, wanted), found))
    return {"kind": "grads", "grads": [plain(by_leaf.get(id(t))) for t in leaves],
            "states": [capture(obj, attrs_only=True) for obj in objects]}


# ----------------------------------------------------------------------------------------------------------
# The trusted side


_STUDENT_TYPES: dict[str, type] = {}


def _exception(reply: dict) -> BaseException:
    """The exception a submission reported, as the same built-in type where there is one."""
    name, message, frame = (str(reply.get(k, ""))[:TEXT_LIMIT] for k in ("type", "message", "frame"))
    cls = getattr(builtins, name, None)
    error = None
    if isinstance(cls, type) and (issubclass(cls, Exception) or cls is SystemExit):
        try:
            error = cls(message)
        except Exception:
            error = None
    if error is None:
        key = name if name.isidentifier() else "StudentError"
        if key not in _STUDENT_TYPES:
            _STUDENT_TYPES[key] = type(key, (StudentError,), {})
        error = _STUDENT_TYPES[key](message)
    error.student_frame = frame
    return error


class Remote:
    """The trusted side's connection to one submission process."""

    def __init__(self, channel: Channel, deadline: float):
        self.channel = channel
        self.deadline = deadline  # the submission's hard limit: past it, the submission is killed
        self.alarm_at: float | None = None  # the current exercise's share ends here (the submission stops itself)
        self.gone: str | None = None  # "killed" or "closed" once the submission is unreachable
        self.started = time.time()  # when the current exercise began

    def ask(self, request: tuple) -> dict:
        if self.gone:
            raise SubmissionGone(self.gone)
        try:
            self.channel.send(pickle.dumps(request), self.deadline)
            data = self.channel.recv(self.deadline, MESSAGE_LIMIT)
        except ChannelTimeout:
            self.gone = "killed"
            raise SubmissionGone("killed") from None
        except (ChannelClosed, ChannelOverflow):
            self.gone = "closed"
            raise SubmissionGone("closed") from None
        try:
            reply = rebuild(torch.load(io.BytesIO(data), weights_only=True))
        except BadReply as e:
            self.gone = f"refused: {e}"
            raise SubmissionGone(self.gone) from None
        except Exception:
            reply = None
        if not isinstance(reply, dict):
            self.gone = "closed"
            raise SubmissionGone("closed")
        if reply.get("kind") == "timeout":
            raise TimeUp(max(0.0, (self.alarm_at or time.time()) - self.started))
        if reply.get("kind") == "error":
            raise _exception(reply)
        return reply

    def begin(self, alarm_at: float) -> None:
        """A new exercise: its share of the time ends at `alarm_at`; earlier graphs are freed."""
        self.started, self.alarm_at = time.time(), alarm_at
        self.ask(("release",))

    def call(self, name: str, args: tuple, kwargs: dict):
        objects = mutable_objects(args, kwargs)
        leaves = grad_leaves(objects)
        payload = _pickled((args, kwargs, objects, [capture(o) for o in objects], leaves, torch.is_grad_enabled(),
                            torch.get_rng_state()))
        reply = self.ask(("call", name, payload, self.alarm_at))
        try:
            tensors = reply["tensors"]
            if not (isinstance(tensors, list) and all(isinstance(t, torch.Tensor) for t in tensors)):
                raise BadReply("tensors")
            value = reply["value"]
            states, outputs, handle = reply["states"], reply["outputs"], reply["handle"]
            if not (isinstance(states, list) and len(states) == len(objects) and isinstance(outputs, list)
                    and all(isinstance(k, int) and 0 <= k < len(tensors) for k in outputs)):
                raise BadReply("states")
            rng = reply["rng"]
        except (KeyError, TypeError, BadReply):
            self.gone = "closed"
            raise SubmissionGone("closed") from None
        for obj, state in zip(objects, states):
            restore(obj, state)
        if isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8 and rng.shape == torch.get_rng_state().shape:
            torch.set_rng_state(rng)
        outputs = sorted(set(outputs))
        if outputs and isinstance(handle, int) and any(t.requires_grad for t in leaves):
            connected = _RemoteGraph.apply(self, handle, objects, len(leaves), *[tensors[k] for k in outputs],
                                           *leaves)
            for k, t in zip(outputs, connected):
                tensors[k] = t
        else:
            for k in outputs:  # requires grad, but no input of the call does: a new leaf, as locally
                tensors[k].requires_grad_(True)
        try:
            return decode(value, tensors)
        except BadReply:
            self.gone = "closed"
            raise SubmissionGone("closed") from None

    def backward(self, handle: int, objects: list, leaves: list, grads: list) -> list:
        reply = self.ask(("backward", handle, [g.detach() for g in grads], self.alarm_at))
        found, states = reply.get("grads"), reply.get("states")
        if not (isinstance(found, list) and len(found) == len(leaves) and isinstance(states, list)
                and len(states) == len(objects)):
            self.gone = "closed"
            raise SubmissionGone("closed")
        for obj, state in zip(objects, states):
            restore(obj, state, attrs_only=True)
        return [None if g is None else same_tensor(g, t, "a gradient") for g, t in zip(found, leaves)]

    def finish(self) -> int | None:
        """Tell the submission to end; returns how many characters it printed (None when it could not say)."""
        try:
            reply = self.ask(("done",))
        except (SubmissionGone, TimeUp, Exception):
            return None
        printed = reply.get("printed")
        return printed if isinstance(printed, int) else None


class _RemoteGraph(torch.autograd.Function):
    """Connects tensors a submission returned to the arguments they were computed from: backward asks the
    submission for the gradients of the inputs and parameters."""

    @staticmethod
    def forward(ctx, remote, handle, objects, n_leaves, *tensors):
        ctx.remote, ctx.handle, ctx.objects = remote, handle, objects
        n_out = len(tensors) - n_leaves
        ctx.leaves = tensors[n_out:]
        return tuple(t.clone() for t in tensors[:n_out])

    @staticmethod
    def backward(ctx, *grads):
        found = ctx.remote.backward(ctx.handle, ctx.objects, list(ctx.leaves), list(grads))
        n_out = len(grads)
        leaf_grads = [g if ctx.needs_input_grad[4 + n_out + k] else None for k, g in enumerate(found)]
        return (None, None, None, None, *([None] * n_out), *leaf_grads)


class RemoteFunction:
    """What a check is given instead of the student's function: calling it runs the function in the
    submission's process (see the module's docstring)."""

    def __init__(self, remote: Remote, name: str):
        self.remote, self.__name__, self.__qualname__ = remote, name, name

    def __call__(self, *args, **kwargs):
        return self.remote.call(self.__name__, args, kwargs)


def missing_message(missing: str, broken: dict, defined: list) -> str:
    """The feedback for an exercise whose function the notebook does not define."""
    if missing in broken:
        return f"`{missing}` is in {broken[missing]}: fix it, run the cell, and run the check again."
    close = difflib.get_close_matches(missing, defined, n=1, cutoff=0.6)
    hint = f" (did you rename it to `{close[0]}`?)" if close else ""
    return (f"your notebook defines no `{missing}`{hint}: the grader looks for a function or class named "
            f"`{missing}` at the top level of a cell; keep the exercise's name.")

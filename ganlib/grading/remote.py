"""Extraction and remote calls: the submission's side (define its functions, call them on request) and the
trusted side (`Remote`, `RemoteFunction`), which calls them as if they were local.

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

import ast
import builtins
import difflib
import io
import os
import pickle
import re
import signal
import socket
import sys
import time
import types

import numpy as np
import torch
from torch import nn

from .chapters import PRIVATE_MODULE_PREFIX, first_line, parse_cell
from .sandbox import FRAME, Channel, ChannelClosed, ChannelOverflow, ChannelTimeout

MESSAGE_LIMIT = 64 * 2**20  # bytes: the largest reply the trusted side reads from a submission
TEXT_LIMIT = 500  # characters of any message text a submission sends (its exceptions, its notes)
OUTPUT_KEPT = 20_000  # characters of a submission's printed output kept for its feedback
DEPTH_LIMIT = 8  # nesting of a returned value (tuples of lists of ...)
ITEMS_LIMIT = 10_000  # items in a returned container
PRIMITIVES = (type(None), bool, int, float, str)


class TimeUp(BaseException):
    """An exercise's share of the time limit ran out (not an Exception, so that neither the checks' nor the
    student's `except Exception` swallows it). Its argument: the share in seconds."""


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
# Values and states, as tensors and plain values only (both directions use the same encoding)


def encode(value, tensors: list, depth: int = 0):
    """A returned value as nested lists of tags, primitives and indices into `tensors`."""
    if depth > DEPTH_LIMIT:
        return ["opaque", "a value nested too deeply"]
    if isinstance(value, PRIMITIVES):
        return ["v", value[:100_000] if isinstance(value, str) else value]
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.is_quantized or value.device.type != "cpu":
            return ["opaque", type(value).__name__]
        tensors.append(value)
        return ["t", len(tensors) - 1]
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        return ["nd", torch.from_numpy(np.ascontiguousarray(value)).clone()]
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return ["np", value.dtype.str, value.item()]
    if isinstance(value, (tuple, list)) and len(value) <= ITEMS_LIMIT:
        tag = "list" if isinstance(value, list) else "tuple"
        return [tag, [encode(v, tensors, depth + 1) for v in value]]
    if isinstance(value, dict) and len(value) <= ITEMS_LIMIT and all(isinstance(k, PRIMITIVES) for k in value):
        return ["dict", [[k, encode(v, tensors, depth + 1)] for k, v in value.items()]]
    return ["opaque", type(value).__name__]


class Opaque:
    """Stands for a returned value the grader does not transfer (a function, a module, a custom object);
    `type(x).__name__` is the original type's name, so that messages can say what was returned."""


_OPAQUE_TYPES: dict[str, type] = {}


def _opaque(name: str) -> Opaque:
    name = name if isinstance(name, str) and name.isidentifier() else "object"
    name = name[:60]
    if name not in _OPAQUE_TYPES:
        _OPAQUE_TYPES[name] = type(name, (Opaque,), {})
    return _OPAQUE_TYPES[name]()


class BadReply(Exception):
    """A submission sent something that is not a valid reply."""


def decode(node, tensors: list, depth: int = 0):
    """The inverse of `encode`, checking every node (the submission may send anything)."""
    if depth > DEPTH_LIMIT + 1 or not isinstance(node, list) or not node or not isinstance(node[0], str):
        raise BadReply("malformed value")
    tag, rest = node[0], node[1:]
    if tag == "v" and len(rest) == 1 and isinstance(rest[0], PRIMITIVES):
        return rest[0]
    if tag == "t" and len(rest) == 1 and isinstance(rest[0], int) and 0 <= rest[0] < len(tensors):
        return tensors[rest[0]]
    if tag == "nd" and len(rest) == 1 and isinstance(rest[0], torch.Tensor):
        return rest[0].numpy()
    if tag == "np" and len(rest) == 2 and isinstance(rest[0], str) and isinstance(rest[1], (bool, int, float)):
        try:
            dtype = np.dtype(rest[0])
        except TypeError:
            raise BadReply("malformed numpy type") from None
        if dtype.kind not in "biuf":
            raise BadReply("malformed numpy type")
        return dtype.type(rest[1])
    if tag in ("list", "tuple") and len(rest) == 1 and isinstance(rest[0], list) and len(rest[0]) <= ITEMS_LIMIT:
        items = [decode(v, tensors, depth + 1) for v in rest[0]]
        return items if tag == "list" else tuple(items)
    if tag == "dict" and len(rest) == 1 and isinstance(rest[0], list) and len(rest[0]) <= ITEMS_LIMIT:
        out = {}
        for item in rest[0]:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], PRIMITIVES)):
                raise BadReply("malformed dict")
            out[item[0]] = decode(item[1], tensors, depth + 1)
        return out
    if tag == "opaque" and len(rest) == 1:
        return _opaque(rest[0])
    raise BadReply("malformed value")


def mutable_objects(args, kwargs) -> list:
    """The objects among a call's arguments whose state the call may change, each once, in a fixed order."""
    found, seen = [], set()

    def walk(obj, depth):
        if depth > DEPTH_LIMIT or id(obj) in seen:
            return
        if isinstance(obj, (nn.Module, torch.optim.Optimizer, torch.Generator, torch.Tensor)):
            seen.add(id(obj))
            found.append(obj)
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item, depth + 1)
        elif isinstance(obj, dict):
            for item in obj.values():
                walk(item, depth + 1)

    walk(list(args) + list(kwargs.values()), 0)
    return found


def grad_leaves(objects: list) -> list[torch.Tensor]:
    """The tensors gradients may flow to: tensor arguments and module parameters that require grad."""
    leaves, seen = [], set()
    for obj in objects:
        candidates = obj.parameters() if isinstance(obj, nn.Module) else [obj] if isinstance(obj, torch.Tensor) else []
        for t in candidates:
            if t.requires_grad and id(t) not in seen:
                seen.add(id(t))
                leaves.append(t)
    return leaves


def _plain(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone().as_subclass(torch.Tensor)


def capture(obj, attrs_only: bool = False) -> dict:
    """The state of one mutable argument, as tensors and plain values."""
    if isinstance(obj, nn.Module):
        attrs = [[path, [[k, v] for k, v in vars(m).items() if not k.startswith("_") and isinstance(v, PRIMITIVES)]]
                 for path, m in obj.named_modules()]
        if attrs_only:
            return {"kind": "module", "attrs": attrs}
        return {"kind": "module", "attrs": attrs,
                "params": [[n, _plain(p), _plain(p.grad), p.requires_grad] for n, p in obj.named_parameters()],
                "buffers": [[n, _plain(b)] for n, b in obj.named_buffers()]}
    if attrs_only:
        return {"kind": "none"}
    if isinstance(obj, torch.optim.Optimizer):
        return {"kind": "optimizer", "state": obj.state_dict()}
    if isinstance(obj, torch.Generator):
        return {"kind": "generator", "state": obj.get_state()}
    if isinstance(obj, torch.Tensor):
        return {"kind": "tensor", "data": _plain(obj), "grad": _plain(obj.grad), "requires_grad": obj.requires_grad}
    return {"kind": "none"}


def _same_tensor(new, old: torch.Tensor, what: str) -> torch.Tensor:
    if not (isinstance(new, torch.Tensor) and new.shape == old.shape and new.dtype == old.dtype):
        raise RuntimeError(f"{what} changed its shape or type")
    return new


def _set_grad(t: torch.Tensor, grad, what: str) -> None:
    t.grad = None if grad is None else _same_tensor(grad, t, f"the gradient of {what}")


@torch.no_grad()
def restore(obj, state, attrs_only: bool = False) -> None:
    """Write a state from `capture` into `obj` in place. A state that does not fit raises RuntimeError, which
    the check reports like any error of the student's code."""
    if not isinstance(state, dict) or state.get("kind") == "none":
        return
    kind = state.get("kind")
    if isinstance(obj, nn.Module) and kind == "module":
        modules = dict(obj.named_modules())
        for path, attrs in state.get("attrs") or []:
            module = modules.get(path)
            for key, value in attrs if module is not None else []:
                if (isinstance(key, str) and key in vars(module) and not key.startswith("_")
                        and isinstance(value, PRIMITIVES) and isinstance(vars(module)[key], PRIMITIVES)):
                    setattr(module, key, value)
        if attrs_only:
            return
        params = dict(obj.named_parameters())
        for name, data, grad, requires_grad in state.get("params") or []:
            p = params.get(name)
            if p is None:
                continue
            data = _same_tensor(data, p, f"parameter {name}")
            if not torch.equal(data, p):
                p.copy_(data)
            _set_grad(p, grad, f"parameter {name}")
            p.requires_grad_(bool(requires_grad))
        buffers = dict(obj.named_buffers())
        for name, data in state.get("buffers") or []:
            b = buffers.get(name)
            if b is not None and data is not None and not torch.equal(_same_tensor(data, b, f"buffer {name}"), b):
                b.copy_(data)
    elif attrs_only:
        return
    elif isinstance(obj, torch.optim.Optimizer) and kind == "optimizer":
        try:
            obj.load_state_dict(state["state"])
        except Exception as e:
            raise RuntimeError(f"the optimizer's state could not be read back ({first_line(e)})") from None
    elif isinstance(obj, torch.Generator) and kind == "generator":
        new = state.get("state")
        if isinstance(new, torch.Tensor) and new.dtype == torch.uint8:
            try:
                obj.set_state(new)
            except RuntimeError:
                raise RuntimeError("the random generator's state could not be read back") from None
    elif isinstance(obj, torch.Tensor) and kind == "tensor":
        data = _same_tensor(state.get("data"), obj, "an input tensor")
        if not torch.equal(data, obj):
            obj.copy_(data)
        _set_grad(obj, state.get("grad"), "an input tensor")
        if obj.is_leaf and obj.requires_grad != bool(state.get("requires_grad")):
            obj.requires_grad_(bool(state.get("requires_grad")))


# ----------------------------------------------------------------------------------------------------------
# The submission's side


class _alarm:
    """Context manager: raise TimeUp at the absolute time `at` (None: no alarm)."""

    def __init__(self, at: float | None):
        self.at = at

    def __enter__(self):
        if self.at is not None and hasattr(signal, "setitimer"):
            self.seconds = max(0.01, self.at - time.time())
            signal.signal(signal.SIGALRM, self._raise)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        if self.at is not None and hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _raise(self, signum, frame):
        raise TimeUp(self.seconds)


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
    from ..env import seed_everything

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
        module, notes, broken = _define(cells, calls, deadline, parts)
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
    try:
        with _alarm(alarm_at), torch.set_grad_enabled(grad_enabled):
            result = targets[call](*args, **kwargs)
    except TimeUp:
        return {"kind": "timeout"}
    except BaseException as e:
        return _error_reply(e)
    tensors: list[torch.Tensor] = []
    value = encode(result, tensors)
    outputs = [k for k, t in enumerate(tensors) if t.requires_grad]
    handle = None
    if outputs and any(t.requires_grad for t in leaves):
        handle = len(graphs)
        graphs[handle] = ([tensors[k] for k in outputs], leaves, objects)
    return {"kind": "result", "value": value, "tensors": [_plain(t) for t in tensors], "outputs": outputs,
            "handle": handle, "states": [capture(obj) for obj in objects], "rng": torch.get_rng_state()}


def _backward_reply(graphs, handle, grads, alarm_at) -> dict:
    outputs, leaves, objects = graphs[handle]
    wanted = [t for t in leaves if t.requires_grad]
    try:
        with _alarm(alarm_at):
            found = torch.autograd.grad(outputs, wanted, grads, allow_unused=True) if wanted else []
    except TimeUp:
        return {"kind": "timeout"}
    except BaseException as e:
        return _error_reply(e)
    by_leaf = dict(zip(map(id, wanted), found))
    return {"kind": "grads", "grads": [_plain(by_leaf.get(id(t))) for t in leaves],
            "states": [capture(obj, attrs_only=True) for obj in objects]}


# ----------------------------------------------------------------------------------------------------------
# Extraction: the notebook's functions, classes, literal constants and the imports they use


def _define(cells: list[tuple[int, str]], calls: list[str], deadline: float,
            parts: int) -> tuple[object, list[str], dict[str, str]]:
    """Define the notebook's functions, classes, literal constants and the imports they use in a fresh module,
    within an equal share (1 / `parts`) of the time left before `deadline`. Each statement may use what is
    left of that share, less a little for each statement after it, so that a loop in one (in a class body, a
    decorator, a default argument) loses that statement only.

    Returns the module, notes for the feedback (syntax errors, failed imports), and for each name defined in
    a cell that could not be parsed, where that cell is."""
    import linecache

    module = types.ModuleType("submission")
    sys.modules["submission"] = module
    notes, broken, kept, sources = [], {}, [], {}
    wanted = {node.id for call in calls for node in ast.walk(ast.parse(call, mode="eval"))
              if isinstance(node, ast.Name)}
    for number, source in cells:
        filename = f"<cell {number}>"
        tree, error = parse_cell(source, filename)
        if tree is None:
            where = f"cell {number}, which has a syntax error at line {error.lineno} ({error.msg})"
            notes.append(f"cell {number} has a syntax error at line {error.lineno} ({error.msg}); the grader "
                         f"skipped that cell.")
            for name in re.findall(r"^\s*(?:async\s+)?(?:def|class)\s+(\w+)", source, re.M):
                broken[name] = where
            continue
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # for tracebacks
        sources[filename] = source
        flags = 0
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                import __future__

                for alias in node.names:
                    flags |= getattr(getattr(__future__, alias.name, None), "compiler_flag", 0)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
                kept.append((filename, flags, node))
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if all(isinstance(t, ast.Name) for t in targets) and (
                        _is_literal(node.value) or any(t.id in wanted for t in targets)):
                    kept.append((filename, flags, node))
    used = wanted | {n.id for _, _, node in kept if not isinstance(node, (ast.Import, ast.ImportFrom))
                     for n in ast.walk(node) if isinstance(n, ast.Name)}
    kept = [k for k in kept if not isinstance(k[2], (ast.Import, ast.ImportFrom)) or _binds(k[2], used)]
    end = time.time() + max(0.05, (deadline - 1.0 - time.time()) / max(1, parts))
    for k, (filename, flags, node) in enumerate(kept):
        text = (ast.get_source_segment(sources[filename], node) or "?").splitlines()[0][:80]
        where = f"{filename.strip('<>')}, line {node.lineno}: `{text}`"
        try:
            with _alarm(max(time.time() + 0.05, end - 0.02 * (len(kept) - k - 1))):
                code = compile(ast.Module(body=[node], type_ignores=[]), filename, "exec", flags=flags,
                               dont_inherit=True)
                exec(code, module.__dict__)
        except TimeUp:
            notes.append(f"{where} took too long to define (a loop in a class body, a decorator or a default "
                         f"argument?); the grader skipped it.")
        except Exception as e:
            notes.append(f"{where} raised {type(e).__name__}: {first_line(e)}")
    return module, notes, broken


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def _binds(node: ast.Import | ast.ImportFrom, used: set[str]) -> bool:
    """Whether an import binds a name that the kept code uses (`import *` always counts)."""
    for alias in node.names:
        if alias.name == "*":
            return True
        bound = alias.asname or (alias.name.split(".")[0] if isinstance(node, ast.Import) else alias.name)
        if bound in used:
            return True
    return False


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
            reply = torch.load(io.BytesIO(data), weights_only=True)
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
        return [None if g is None else _same_tensor(g, t, "a gradient") for g, t in zip(found, leaves)]

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

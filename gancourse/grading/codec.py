"""Values and states as tensors and plain values only, in both directions: what a check passes (the state of
every mutable argument) and what the submission sends back (its result and those states). The trusted side
decodes a reply without unpickling and checks every node (the submission may send anything)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ganlib.errors import first_line

from .limits import DEPTH_LIMIT, ITEMS_LIMIT, NODES_LIMIT, TENSOR_BYTES_LIMIT

PRIMITIVES = (type(None), bool, int, float, str)


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


_DTYPES = {torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
           torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool}


def rebuild(reply):
    """A reply as the trusted side reads it: the same structure, rebuilt from raw data. Every tensor becomes a
    fresh `torch.Tensor` of the same dtype, shape and values (no subclass, no instance attributes, no shared
    storage, no strides), every container a new list, tuple or dict. Raises BadReply, naming the limit, when the
    reply holds more than NODES_LIMIT values (shared references counted each time) or more than
    TENSOR_BYTES_LIMIT bytes of tensors once materialised, or anything but tensors and plain values."""
    budget = {"nodes": NODES_LIMIT, "bytes": TENSOR_BYTES_LIMIT}

    def spend(kind: str, amount: int) -> None:
        budget[kind] -= amount
        if budget[kind] < 0:
            raise BadReply(f"the reply holds more than {NODES_LIMIT:,} values" if kind == "nodes" else
                           f"the reply's tensors take more than {TENSOR_BYTES_LIMIT >> 20} MB once materialised")

    def walk(node, depth: int):
        spend("nodes", 1)
        if depth > 3 * DEPTH_LIMIT:
            raise BadReply("the reply is nested too deeply")
        if node is None or type(node) in (bool, int, float):
            return node
        if type(node) is str:
            spend("bytes", len(node))
            return node
        if isinstance(node, torch.Tensor):
            if type(node) not in (torch.Tensor, nn.Parameter) or node.layout != torch.strided \
                    or node.dtype not in _DTYPES or node.device.type != "cpu":
                raise BadReply("the reply holds a tensor of a kind the grader does not read")
            spend("bytes", node.numel() * node.element_size())
            fresh = torch.empty(tuple(node.shape), dtype=node.dtype)
            torch.Tensor.copy_(fresh, torch.Tensor.as_subclass(node, torch.Tensor).detach())
            return fresh
        if type(node) in (list, tuple):
            items = [walk(item, depth + 1) for item in node]
            return items if type(node) is list else tuple(items)
        if type(node) is dict:
            out = {}
            for key, value in node.items():
                if key is not None and type(key) not in (bool, int, float, str):
                    raise BadReply("the reply holds a dict with a key that is not a plain value")
                out[walk(key, depth + 1)] = walk(value, depth + 1)
            return out
        raise BadReply(f"the reply holds a {type(node).__name__}")

    return walk(reply, 0)


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


def plain(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone().as_subclass(torch.Tensor)


def capture(obj, attrs_only: bool = False) -> dict:
    """The state of one mutable argument, as tensors and plain values."""
    if isinstance(obj, nn.Module):
        attrs = [[path, [[k, v] for k, v in vars(m).items() if not k.startswith("_") and isinstance(v, PRIMITIVES)]]
                 for path, m in obj.named_modules()]
        if attrs_only:
            return {"kind": "module", "attrs": attrs}
        return {"kind": "module", "attrs": attrs,
                "params": [[n, plain(p), plain(p.grad), p.requires_grad] for n, p in obj.named_parameters()],
                "buffers": [[n, plain(b)] for n, b in obj.named_buffers()]}
    if attrs_only:
        return {"kind": "none"}
    if isinstance(obj, torch.optim.Optimizer):
        return {"kind": "optimizer", "state": obj.state_dict()}
    if isinstance(obj, torch.Generator):
        return {"kind": "generator", "state": obj.get_state()}
    if isinstance(obj, torch.Tensor):
        return {"kind": "tensor", "data": plain(obj), "grad": plain(obj.grad), "requires_grad": obj.requires_grad}
    return {"kind": "none"}


def same_tensor(new, old: torch.Tensor, what: str) -> torch.Tensor:
    if not (isinstance(new, torch.Tensor) and new.shape == old.shape and new.dtype == old.dtype):
        raise RuntimeError(f"{what} changed its shape or type")
    return new


def _set_grad(t: torch.Tensor, grad, what: str) -> None:
    t.grad = None if grad is None else same_tensor(grad, t, f"the gradient of {what}")


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
            data = same_tensor(data, p, f"parameter {name}")
            if not torch.equal(data, p):
                p.copy_(data)
            _set_grad(p, grad, f"parameter {name}")
            p.requires_grad_(bool(requires_grad))
        buffers = dict(obj.named_buffers())
        for name, data in state.get("buffers") or []:
            b = buffers.get(name)
            if b is not None and data is not None and not torch.equal(same_tensor(data, b, f"buffer {name}"), b):
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
        data = same_tensor(state.get("data"), obj, "an input tensor")
        if not torch.equal(data, obj):
            obj.copy_(data)
        _set_grad(obj, state.get("grad"), "an input tensor")
        if obj.is_leaf and obj.requires_grad != bool(state.get("requires_grad")):
            obj.requires_grad_(bool(state.get("requires_grad")))

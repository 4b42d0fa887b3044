"""Data-parallel training over several processes (one per GPU), as launched by ``torchrun``.

    torchrun --standalone --nproc_per_node=4 -m gancourse train dcgan --out runs/dcgan

Each process holds a full copy of G and D and trains on its own slice of every global batch; after each
backward pass the processes average their gradients, so every copy takes the same optimizer step and the
copies stay identical. N processes with batch B train like one process with batch N x B.

How ganlib does it, and why it does not wrap G and D in `torch.nn.parallel.DistributedDataParallel` (DDP):
DDP averages the gradients of forward passes made through its wrapper only. A chapter's trainer that calls
the plain module or one of its parts (StyleGAN's `G.mapping` and `G.synthesis`, a PGGAN block) would train
copies that drift apart, and nothing would complain. ganlib instead averages the gradients of every parameter
the optimizer holds, once per update, right before the step (`average_gradients`, called by
`Trainer.optimizer_step`), as NVIDIA's StyleGAN3 training loop does. Whatever a chapter's step computes (extra
forward passes, gradient penalties through `torch.autograd.grad`, lazy regularisers, a G step through a frozen
D), its gradients are averaged. The price: communication does not overlap with the backward pass, which matters
little for models of this course's size.

`BatchStream` gives each process its own slice of every global batch (as torch's `DistributedSampler`), and
one process the whole batch.

The command line joins the process group torchrun describes in the environment (`gancourse.launch`); outside
torchrun everything here is a no-op.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from .errors import GanlibError

__all__ = [
    "is_initialized", "rank", "world_size", "local_device", "broadcast_module",
    "average_gradients", "same_everywhere", "check_copies_equal", "average_values", "gather_objects",
    "convert_sync_batchnorm", "BatchStream"
]


def is_initialized() -> bool:
    """Whether this process is one of several in a process group (torchrun)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's number, 0 to world_size() - 1 (0 outside torchrun)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """How many processes train together (1 outside torchrun)."""
    return dist.get_world_size() if is_initialized() else 1


def local_device() -> torch.device:
    """This process's device: its own GPU under torchrun (cuda:LOCAL_RANK), else cuda or cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _flat_groups(tensors: list[torch.Tensor]) -> dict[tuple, list[torch.Tensor]]:
    groups: dict[tuple, list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    return groups


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy `module`'s parameters and buffers from process `src` to all others (equal initial weights)."""
    if world_size() == 1:
        return
    with torch.no_grad():
        for group in _flat_groups([*module.parameters(), *module.buffers()]).values():
            flat = torch.cat([t.reshape(-1) for t in group])
            dist.broadcast(flat, src)
            for t, part in zip(group, flat.split([t.numel() for t in group])):
                t.copy_(part.view_as(t))


def average_gradients(params: Iterable[torch.Tensor], what: str = "the model") -> None:
    """Replace each parameter's gradient by its mean over all processes (one all-reduce per dtype).

    Parameters without a gradient are left alone; every process must have gradients for the same ones
    (checked first, so that a step which differs between processes fails with a message, not a hang).
    """
    if world_size() == 1:
        return
    params = [p for p in params if p.grad is not None]
    if not same_everywhere(torch.tensor([len(params), sum(p.numel() for p in params)])):
        raise GanlibError(f"the processes computed gradients for different parts of {what}: a chapter's step "
                          f"must use the same parameters in every process, whatever its data.")
    with torch.no_grad():
        for group in _flat_groups([p.grad for p in params]).values():
            flat = torch.cat([g.reshape(-1) for g in group])
            dist.all_reduce(flat)
            flat /= world_size()
            for g, part in zip(group, flat.split([g.numel() for g in group])):
                g.copy_(part.view_as(g))


def same_everywhere(values: torch.Tensor) -> bool:
    """Whether the small tensor `values` is equal in all processes (the same answer in every process)."""
    if world_size() == 1:
        return True
    values = torch.nan_to_num(values.detach().double().reshape(-1)).to(local_device())
    both = torch.cat([values, -values])
    dist.all_reduce(both, dist.ReduceOp.MAX)  # [max over processes, -min over processes]
    return torch.equal(both[: len(values)], -both[len(values):])


def check_copies_equal(modules: dict[str, nn.Module]) -> None:
    """Raise a GanlibError unless every process holds the same weights in each module (compares checksums)."""
    if world_size() == 1:
        return
    for name, module in modules.items():
        sums = [p.detach().double().sum() for p in module.parameters()]
        if not same_everywhere(torch.stack(sums) if sums else torch.zeros(1)):
            raise GanlibError(f"the processes' copies of {name} differ: a chapter that creates or changes "
                              f"parameters outside the optimizer step must do it alike in every process (copy "
                              f"new parameters from process 0 with ganlib.distributed.broadcast_module).")


def average_values(values: dict[str, torch.Tensor | float]) -> dict[str, torch.Tensor]:
    """The mean of each scalar over all processes (losses for the log, so that all decide alike)."""
    out = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in values.items()}
    if world_size() == 1 or not out:
        return out
    keys = sorted(out)
    flat = torch.stack([out[k].detach().reshape(()) for k in keys]).to(local_device())
    dist.all_reduce(flat)
    return dict(zip(keys, (flat / world_size()).cpu()))


def gather_objects(obj) -> list:
    """[obj of process 0, obj of process 1, ...] on every process (pickled; for small states)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """`module` with every batch norm layer replaced by SyncBatchNorm (statistics over all processes' batches).

    PyTorch computes synchronised batch statistics on GPUs only.
    """
    if device.type != "cuda":
        raise GanlibError("sync_batchnorm needs GPUs: PyTorch synchronises batch norm statistics on CUDA "
                          "devices only. Leave it off on CPUs (each process then normalises its own batch).")
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


class BatchStream:
    """An endless stream of minibatch indices: a fresh permutation per epoch, batches may straddle epochs.

    Its whole state is (epoch, position), so it resumes exactly. With `world_size` > 1, rank r gets every
    world_size-th index of each global batch (ranks see disjoint data).
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if n <= 0:
            raise GanlibError("the dataset is empty: check the dataset name or folder.")
        self.n, self.batch_size, self.seed, self.rank, self.world_size = n, batch_size, seed, rank, world_size
        self.epoch, self.pos = 0, 0
        self._perm = self._permutation(0)

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def next(self, batch_size: int | None = None) -> torch.Tensor:
        """The next batch of indices [batch_size] (default: the stream's own batch_size)."""
        need, parts = (batch_size or self.batch_size) * self.world_size, []
        while need:
            take = min(need, self.n - self.pos)
            parts.append(self._perm[self.pos: self.pos + take])
            self.pos += take
            need -= take
            if self.pos == self.n:
                self.epoch, self.pos = self.epoch + 1, 0
                self._perm = self._permutation(self.epoch)
        return torch.cat(parts)[self.rank:: self.world_size]  # [batch_size]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._perm = self._permutation(self.epoch)

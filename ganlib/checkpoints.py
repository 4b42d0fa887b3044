"""Checkpoint files: what a `Trainer` saves and restores, and reading the files back.

A checkpoint (``run_dir/checkpoint.pt``, written atomically with a checksum by `files.atomic_save`, the one
before kept as ``checkpoint.prev.pt``) holds the whole training state: the networks, G_ema, the optimizers,
the data stream, every random generator, the history, the chapter's own state ("extra"), the run's options
and the model spec from which `load_generator` rebuilds G: a `Trainer.state_dict()`, which `write` saves and
`read_to_resume` reads back with the rules of resuming. `export_generator` writes the part that sampling
needs (a generator file such as the StyleGAN generator shipped in ``ganlib/pretrained``).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import torch

from . import distributed, viz
from .env import default_device
from .errors import GanlibError, first_line
from .files import atomic_save, atomic_write_text, damage, previous_path
from .models import check_version
from .options import option_changes

__all__ = [
    "CHECKPOINT_FORMAT", "PER_PROCESS", "load_checkpoint_file", "write", "read_to_resume", "fitting",
    "load_optimizer_state", "spec_difference", "describe", "load_generator", "export_generator"
]

CHECKPOINT_FORMAT = 1  # bump when the checkpoint layout changes


def load_checkpoint_file(path: str | Path) -> dict:
    """Read a ganlib checkpoint with weights_only=True, after checking its checksums (`files.damage`); a
    GanlibError if it is missing, damaged or foreign, which names the previous checkpoint when that one is
    intact."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        only_previous = f", only the previous one {previous_path(path).name}: rename it to {path.name} to use it" \
            if previous_path(path).is_file() else ": train first, or check the run folder"
        raise GanlibError(f"no checkpoint at {str(path)!r}{only_previous}.")
    reason = damage(path)
    if reason is None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            reason = first_line(e, 100)
    if reason is not None:
        raise GanlibError(f"{str(path)!r} is not a readable ganlib checkpoint ({reason}): it is damaged or from "
                          f"another program; {_way_back(path)}.") from None
    if not isinstance(state, dict) or "format" not in state:
        raise GanlibError(f"{str(path)!r} is not a ganlib checkpoint: delete it or point to another run folder.")
    if state["format"] != CHECKPOINT_FORMAT:
        raise GanlibError(f"{str(path)!r} has checkpoint format {state['format']}, this ganlib reads format "
                          f"{CHECKPOINT_FORMAT}: use the ganlib version that wrote it, or train again.")
    return state


def _way_back(path: Path) -> str:
    """What to do about a damaged checkpoint: go back to the previous one when it is intact, else train again."""
    previous = previous_path(path)
    if previous.is_file() and damage(previous) is None:
        with contextlib.suppress(Exception):
            step = torch.load(previous, map_location="cpu", weights_only=True)["step"]
            return (f"the previous checkpoint {str(previous)!r} (step {step}) is intact: rename it to {path.name} "
                    f"to continue from there, or delete both and train again")
    return "delete it and train again"


def write(state: dict, path: Path, run_dir: Path | None = None) -> None:
    """Write a `Trainer.state_dict()` atomically to `path` (the file before kept as checkpoint.prev.pt); in a
    run folder also its config.json and the history's CSV, readable without torch.

    With several processes, every process calls this: their random and chapter states are gathered under
    "processes" (for exact resume), and process 0 writes."""
    processes = distributed.gather_objects({k: state[k] for k in PER_PROCESS})
    if distributed.rank() != 0:
        return
    if len(processes) > 1:
        state = {**state, "processes": processes}
    atomic_save(state, path, keep_previous=True)
    if run_dir is not None and path.parent == run_dir:
        atomic_write_text(json.dumps({k: state[k] for k in ("spec", "config", "data", "step")}, indent=2),
                          run_dir / "config.json")
        viz.write_history(state["history"], run_dir / viz.HISTORY_FILE)


PER_PROCESS = ("rng", "torch_rng", "cuda_rng", "extra")  # what differs between the processes of one run


def read_to_resume(path: Path, current: dict, global_batch: int) -> tuple[dict, list[str]]:
    """(The checkpoint at `path` as this process resumes it, the options this run changes) for a trainer whose
    `state_dict()` is `current`: a GanlibError if the data, the model or an option of `RESUME_FIXED` differ.

    The state holds this process's own random and chapter state; when the run had another number of
    processes, process 0's chapter state and "rng" None (the trainer reseeds), with a warning that the global
    batch (now `global_batch`) changes."""
    state = load_checkpoint_file(path)
    if state.get("data", current["data"]) != current["data"]:
        raise GanlibError(f"{str(path)!r} was trained on {state['data']}, this run is on {current['data']}: "
                          f"resume with --data {state['data']}, or start a new run in another folder.")
    changes = option_changes(state["config"], {k: tuple(v) if isinstance(v, list) else v
                                               for k, v in current["config"].items()}, path)
    if state["spec"] is not None:
        check_version(state["spec"])  # an older version of the networks: say so, not that a shape differs
    if current["spec"] is not None and state["spec"] is not None and state["spec"] != current["spec"]:
        raise GanlibError(f"{str(path)!r} was written for another model than this run builds "
                          f"({spec_difference(state['spec'], current['spec'])}): use the same model settings "
                          f"(--profile, --resolution, --set), or another run folder.")
    processes = state.get("processes") or [{k: state[k] for k in PER_PROCESS}]
    rank, world_size = distributed.rank(), distributed.world_size()
    if len(processes) == world_size:
        return {**state, **processes[rank]}, changes
    if rank == 0:
        before = state["config"]["batch_size"] * state["config"].get("accumulate", 1) * len(processes)
        warnings.warn(f"{str(path)!r} was trained by {len(processes)} process(es) and continues with "
                      f"{world_size}: the global batch changes from {before} to {global_batch} "
                      f"(adjust --batch-size or --accumulate to keep it), and the run is no longer "
                      f"exactly reproducible.", stacklevel=3)
    return {**state, "rng": None, "torch_rng": None, "cuda_rng": None}, changes


@contextlib.contextmanager
def fitting(path: Path):
    """Around loading a checkpoint's weights: a GanlibError, not torch's error, when they do not fit."""
    try:
        yield
    except (RuntimeError, ValueError, KeyError) as e:
        raise GanlibError(f"{str(path)!r} does not fit these networks ({first_line(e, 150)}): it was written for "
                          f"another model; use the same model settings, or another run folder.") from None


def load_optimizer_state(opt: torch.optim.Optimizer, saved: dict) -> None:
    """Restore an optimizer's moments from its saved state, keeping the hyper-parameters (lr, betas, eps) it
    was built with from the current config, so that a resumed run applies changed rates."""
    current, groups = opt.state_dict()["param_groups"], saved["param_groups"]
    if len(groups) == len(current):  # else load_state_dict says that the state does not fit
        groups = [{**old, **{k: v for k, v in new.items() if k != "params"}} for old, new in zip(groups, current)]
    opt.load_state_dict({"state": saved["state"], "param_groups": groups})


def spec_difference(saved: dict, built: dict) -> str:
    """What differs between two model specs, e.g. "family gan vs dcgan" or "D pack 2 vs 1" (saved first)."""
    if saved.get("family") != built.get("family"):
        return f"family {saved.get('family')} vs {built.get('family')}"
    parts = [f"{net} {key} {saved.get(net, {}).get(key)} vs {built.get(net, {}).get(key)}" for net in ("G", "D")
             for key in sorted(set(saved.get(net, {})) | set(built.get(net, {})))
             if saved.get(net, {}).get(key) != built.get(net, {}).get(key)]
    return ", ".join(parts) or f"{describe(saved)} vs {describe(built)}"


def describe(spec: dict | None) -> str:
    """'dcgan(resolution=32, img_channels=1, ...)' for error messages."""
    if not spec:
        return "(unknown)"
    args = ", ".join(f"{k}={v}" for k, v in spec.get("G", {}).items())
    return f"{spec.get('family')}({args})"


def load_generator(run_dir: str | Path, device=None):
    """(G, spec, checkpoint state) of a run (or of a generator file): G_ema when the run kept one, in eval mode."""
    from .models import build

    state = load_checkpoint_file(run_dir)
    spec = state.get("spec")
    if not spec:
        raise GanlibError(f"the checkpoint in {str(run_dir)!r} has no model description (it was trained from "
                          f"hand-built networks); sample it from Python with Trainer.sample instead.")
    G, _ = build(spec, saved=True)
    try:
        G.load_state_dict(state["G_ema"] if state.get("G_ema") is not None else state["G"])
    except RuntimeError as e:
        raise GanlibError(f"the weights in {str(run_dir)!r} do not fit the model they claim to be "
                          f"({first_line(e, 120)}): the checkpoint is damaged; train again.") from None
    device = default_device(device)
    return G.to(device).eval(), spec, state


def export_generator(run_dir, path) -> None:
    """Write a run's G_ema, model spec and training history (no D, no optimiser state: a few hundred KB) as a
    file `load_generator` can read."""
    state = load_checkpoint_file(run_dir)
    atomic_save({k: state[k] for k in ("format", "spec", "config", "data", "step", "images_seen", "elapsed",
                                       "G_ema", "history")}, path)

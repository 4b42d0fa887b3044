"""Checkpoint files: what a `Trainer` saves and restores, and reading the files back.

A checkpoint (``run_dir/checkpoint.pt``, written atomically with a checksum by `files.atomic_save`, the one
before kept as ``checkpoint.prev.pt``) holds the whole training state: the networks, G_ema, the optimizers,
the data stream, every random generator, the history, the chapter's own state (`Trainer.extra_state`), the
run's options and the model spec from which `load_generator` rebuilds G. `export_generator` writes the part
that sampling needs (a generator file such as the StyleGAN generator shipped in ``ganlib/pretrained``).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from dataclasses import asdict
from pathlib import Path

import torch

from . import distributed, viz
from .env import default_device
from .errors import GanlibError, first_line
from .files import atomic_save, atomic_write_text, damage, previous_path
from .options import option_changes

__all__ = [
    "CHECKPOINT_FORMAT", "load_checkpoint_file", "Checkpointing", "spec_difference", "describe", "load_generator",
    "export_generator"
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


class Checkpointing:
    """The part of `Trainer` (a base class of it, on its attributes) that saves and restores the whole training
    state, for exact resume."""

    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "spec": self.spec,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.run_options().items()},
            "data": getattr(self.data, "name", "?"),
            "resolution": getattr(self.data, "resolution", None),
            "step": self.step,
            "images_seen": self.images_seen,
            "elapsed": self.elapsed,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scalers": {k: s.state_dict() for k, s in self.scalers.items()},
            "stream": self.stream.state_dict(),
            **self.random_state(),
            "history": self.history,
            "extra": self.extra_state(),
        }

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write the whole training state atomically (default: run_dir/checkpoint.pt), after checking that
        the losses and weights are finite, so the file on disk is always a good state to resume from.

        With several processes, every process must call this (they exchange their random and chapter
        states); process 0 writes the file."""
        self.flush_stats()
        for name, module in (("G", self.G), ("D", self.D)):
            if not all(torch.isfinite(p).all() for p in module.parameters()):
                raise self.diverged(f"{name}'s weights became NaN/inf by step {self.step}")
        if path is None:
            if self.run_dir is None:
                raise GanlibError("this trainer has no run_dir: pass a path to save_checkpoint.")
            path = self.run_dir / "checkpoint.pt"
        # each process's random state and chapter state (StyleGAN's path-length mean), for exact resume
        processes = distributed.gather_objects({**self.random_state(), "extra": self.extra_state()})
        if self.is_main:
            state = self.state_dict()
            if self.world_size > 1:
                state["processes"] = processes
            atomic_save(state, path, keep_previous=True)  # the one before stays as checkpoint.prev.pt
            if self.run_dir is not None and Path(path).parent == self.run_dir:
                atomic_write_text(json.dumps({"spec": self.spec, "config": state["config"],
                                              "data": self.data.name, "step": self.step}, indent=2),
                                  self.run_dir / "config.json")
                viz.write_history(self.history, self.run_dir / viz.HISTORY_FILE)  # the curves, readable without torch
        self.last_checkpoint_step = self.step
        return Path(path)

    def load_checkpoint(self, path: str | Path | None = None) -> Checkpointing:
        """Restore the whole training state; training then continues exactly where it stopped."""
        if path is None:
            if self.run_dir is None:
                raise GanlibError("this trainer has no run_dir: pass the checkpoint path to load_checkpoint.")
            path = self.run_dir / "checkpoint.pt"
        state = load_checkpoint_file(path)
        self.resumed_with = self.option_changes(state, path)
        if state["spec"] is not None:
            from .models import check_version

            check_version(state["spec"])  # an older version of the networks: say so, not that a shape differs
        if self.spec is not None and state["spec"] is not None and state["spec"] != self.spec:
            raise GanlibError(f"{str(path)!r} was written for another model than this run builds "
                              f"({spec_difference(state['spec'], self.spec)}): use the same model settings "
                              f"(--profile, --resolution, --set), or another run folder.")
        try:
            self.G.load_state_dict(state["G"])
            self.D.load_state_dict(state["D"])
            if self.G_ema is not None:
                self.G_ema.load_state_dict(state["G_ema"] if state["G_ema"] is not None else state["G"])
            _load_optimizer_state(self.opt_g, state["opt_g"])
            _load_optimizer_state(self.opt_d, state["opt_d"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise GanlibError(f"{str(path)!r} does not fit these networks ({first_line(e, 150)}): it was written for "
                              f"another model; use the same model settings, or another run folder.") from None
        for k, s in self.scalers.items():
            s.load_state_dict(state["scalers"][k])
        self.stream.load_state_dict(state["stream"])
        self.step, self.images_seen, self.elapsed = state["step"], state["images_seen"], state["elapsed"]
        processes = state.get("processes") or [{k: state[k] for k in ("rng", "torch_rng", "cuda_rng", "extra")}]
        extra = state["extra"]
        if len(processes) == self.world_size:
            self.set_random_state(processes[self.rank])
            extra = processes[self.rank]["extra"]
        else:  # another number of processes than the run had: fresh, distinct latents in every process
            self.rng.manual_seed(self.rank_seed(self.step))
            torch.manual_seed(self.rank_seed(self.step) + 1)
            if self.is_main:
                before = state["config"]["batch_size"] * state["config"].get("accumulate", 1) * len(processes)
                warnings.warn(f"{str(path)!r} was trained by {len(processes)} process(es) and continues with "
                              f"{self.world_size}: the global batch changes from {before} to {self.global_batch} "
                              f"(adjust --batch-size or --accumulate to keep it), and the run is no longer "
                              f"exactly reproducible.", stacklevel=2)
        self.history = list(state["history"])
        self.load_extra_state(extra)
        self.last_checkpoint_step = self.step
        return self

    def option_changes(self, state: dict, path: Path) -> list[str]:
        """The options this run changes from the checkpoint's, as "lr_g 0.0002 -> 0.0001" (they apply from now
        on, the optimizers' rates included); a GanlibError if the dataset or an option of `RESUME_FIXED`
        differs."""
        data = getattr(self.data, "name", "?")
        if state.get("data", data) != data:
            raise GanlibError(f"{str(path)!r} was trained on {state['data']}, this run is on {data}: resume with "
                              f"--data {state['data']}, or start a new run in another folder.")
        return option_changes(state["config"], self.run_options(), path)

    def run_options(self) -> dict:
        """The run's options as checkpoints record them: cfg's and the chapter trainer's own (`options`)."""
        return {**asdict(self.cfg), **(asdict(self.options) if self.options is not None else {})}

    def random_state(self) -> dict:
        """This process's random generators (the trainer's, torch's CPU and CUDA ones)."""
        return {"rng": self.rng.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def set_random_state(self, state: dict) -> None:
        self.rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])


def _load_optimizer_state(opt: torch.optim.Optimizer, saved: dict) -> None:
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

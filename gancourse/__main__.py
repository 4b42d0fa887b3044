"""The command line:
``python -m gancourse {train, sample, evaluate, bench, make-exercises, grade, set-repo} --help``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from ganlib.errors import GanlibError


def _parse_value(text: str):
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def cmd_train(args) -> None:
    """Train; under torchrun, this process's share of a run of several (see ganlib/distributed.py)."""
    from . import launch

    launch.init_from_env()
    try:
        _train(args)
    finally:
        launch.shutdown()


def _train(args) -> None:
    from ganlib.env import check_device

    if args.device:
        check_device(args.device)  # a mistyped device, or cuda on a machine without a GPU, before any work
    run_dir = Path(args.out)
    with _run_lock(run_dir):  # one trainer per run folder; it is held until the run stops
        _train_in(run_dir, args)


def _train_in(run_dir: Path, args) -> None:
    from ganlib import distributed
    from ganlib.checkpoints import load_checkpoint_file
    from ganlib.env import seed_everything, set_threads
    from ganlib.options import TrainConfig

    from . import recipes
    from .datasets import load as load_data

    checkpoint = run_dir / "checkpoint.pt"
    _check_run_folder(run_dir, args.resume)
    overrides = {}
    for item in args.set or []:
        if "=" not in item:
            raise GanlibError(f"--set {item!r}: write it as NAME=VALUE, e.g. --set lr_g=1e-4.")
        key, value = item.split("=", 1)
        overrides[key.strip()] = _parse_value(value.strip())
    for key in ("steps", "seed", "batch_size", "accumulate"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    data_name, resolution = args.data, args.resolution
    if args.resume:  # what is not given again is what the run was trained with
        saved = load_checkpoint_file(checkpoint)  # checked before anything is built
        known = recipes.option_names(args.model)  # TrainConfig's and the model's trainer's own
        overrides = {**{k: v for k, v in saved["config"].items() if k in known}, **overrides}
        data_name, resolution = data_name or saved["data"], resolution or saved.get("resolution")
        for option, net in getattr(recipes.get(args.model), "NET_OPTIONS", {}).items():  # e.g. gan's pack
            if option not in overrides and option in (saved.get("spec") or {}).get(net, {}):
                overrides[option] = saved["spec"][net][option]
    if distributed.world_size() > 1:  # process 0 downloads the dataset, if it must, before the others read it
        preset = recipes.preset(args.model, args.profile)
        failed = None
        if distributed.rank() == 0:
            try:
                load_data(data_name or preset["data"], resolution=resolution or preset.get("resolution"))
            except GanlibError as e:
                failed = str(e)
        failed = distributed.gather_objects(failed)[0]  # every process stops alike
        if failed:
            raise GanlibError(failed)
    train_options = {k: v for k, v in overrides.items() if k in TrainConfig.names()}  # not the trainer's own
    seed_everything(TrainConfig.from_dict({**recipes.preset(args.model, args.profile)["train"], **train_options}).seed)
    trainer = recipes.make_trainer(args.model, profile=args.profile, data=data_name, resolution=resolution,
                                   run_dir=run_dir, device=args.device, **overrides)
    say = print if trainer.is_main else (lambda *a, **k: None)  # one voice for all processes
    if args.resume:
        trainer.load_checkpoint()
        changed = f" with {', '.join(trainer.resumed_with)}" if trainer.resumed_with else ""
        say(f"resuming {args.model} from step {trainer.step} of {trainer.cfg.steps}{changed}")
        if trainer.step >= trainer.cfg.steps:
            say(f"nothing to train: the run has reached step {trainer.step}; pass --steps N (more than "
                f"{trainer.step}) to train it further.")
            return
    data, cfg = trainer.data, trainer.cfg
    shape = "x".join(str(s) for s in data.shape)
    parts = [f"{trainer.batch_description()} per process", f"{trainer.world_size} processes"] \
        if trainer.world_size > 1 else [trainer.batch_description()]
    parts += [f"{cfg.accumulate} accumulated"] if cfg.accumulate > 1 else []
    batch = f"batch {' x '.join(parts)}" + (f" = global batch {trainer.global_batch}" if len(parts) > 1 else "")
    where = f"{trainer.world_size} processes ({trainer.device.type})" if trainer.world_size > 1 else trainer.device
    if trainer.device.type == "cpu":  # the run's threads (the gan preset's 1), else ganlib's default
        where = f"{where} ({set_threads(cfg.threads)})"
    with _ctrl_c_saves(trainer) as stop_if_asked:
        say(f"training {args.model} on {data.name} ({len(data)} samples of {shape}) for {cfg.steps} steps, "
            f"{batch}, on {where}; writing to {run_dir}", flush=True)
        trainer.train(callback=stop_if_asked, every=1)
    last = trainer.history[-1] if trainer.history else {}
    losses = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if k.startswith("loss"))
    say(f"done: step {trainer.step}, {trainer.elapsed:.0f} s, {losses}; checkpoint {run_dir / 'checkpoint.pt'}")


def _check_run_folder(run_dir: Path, resume: bool) -> None:
    """--resume needs a checkpoint in the run folder, a new run needs a folder without one (nor its previous
    one, which the new run's second save would replace)."""
    from ganlib.files import previous_path

    checkpoint = run_dir / "checkpoint.pt"
    previous = previous_path(checkpoint)
    if not checkpoint.is_file() and previous.is_file():
        raise GanlibError(f"{str(run_dir)!r} holds only the previous checkpoint {previous.name}: rename it to "
                          f"{checkpoint.name} and pass --resume to continue from it, or choose another --out folder.")
    if resume and not checkpoint.is_file():
        grids = sorted((run_dir / "samples").glob("step*.png")) if (run_dir / "samples").is_dir() else []
        grids = (f" (samples/{grids[-1].name} is a sample grid, not a checkpoint: this run had not saved one "
                 f"when it stopped; --set checkpoint_every=N saves every N steps)") if grids else ""
        raise GanlibError(f"--resume: there is no checkpoint in {str(run_dir)!r}{grids}; start a new run without "
                          f"--resume, or point --out at the run folder to continue.")
    if not resume and checkpoint.is_file():
        raise GanlibError(f"{str(run_dir)!r} already holds a checkpoint: pass --resume to continue it, or choose "
                          f"another --out folder.")


@contextlib.contextmanager
def _run_lock(run_dir: Path):
    """`launch.run_lock` on the run folder, taken by process 0 (the one that writes it); under torchrun every
    process stops alike when it cannot be taken. An unwritable --out stops here, before any work."""
    from ganlib import distributed

    from .launch import run_lock

    with contextlib.ExitStack() as stack:
        failed = None
        if distributed.rank() == 0:
            try:
                stack.enter_context(run_lock(run_dir))
            except GanlibError as e:
                failed = str(e)
            except OSError as e:
                failed = (f"cannot write to --out {str(run_dir)!r} ({e.strerror or e}): choose a folder you can "
                          f"write to.")
        failed = distributed.gather_objects(failed)[0]
        if failed:
            raise GanlibError(failed)
        yield


class Stopped(Exception):
    """Training stopped on request (Ctrl-C) after saving a checkpoint; the message says where."""


@contextlib.contextmanager
def _ctrl_c_saves(trainer):
    """While training, Ctrl-C (SIGINT) asks the loop to stop: at the end of the current step, the callback this
    yields (for `Trainer.train`) saves a checkpoint and raises `Stopped`. A second Ctrl-C stops at once
    (KeyboardInterrupt; the checkpoint file on disk is then the last complete one). Under torchrun, where a
    save needs every process, Ctrl-C stops at once as well."""
    import signal

    asked = []

    def on_sigint(signum, frame):
        if asked:
            raise KeyboardInterrupt
        asked.append(signum)

    def stop_if_asked(trainer) -> None:
        if asked:
            path = trainer.save_checkpoint()
            raise Stopped(f"interrupted at step {trainer.step} of {trainer.cfg.steps}: saved {path}; continue with "
                          f"--resume.")

    if trainer.world_size > 1:
        yield None
        return
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield stop_if_asked
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupted(args) -> str:
    """What a Ctrl-C outside the training loop leaves behind, in one line."""
    command = getattr(args, "command", None)
    if command == "sample":
        return "interrupted; no samples file was written."
    if command != "train":
        return "interrupted."
    import json

    run_dir = Path(args.out)
    try:  # config.json is written with every checkpoint and names its step
        step = json.loads((run_dir / "config.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        step = None
    if step is not None and (run_dir / "checkpoint.pt").is_file():
        return f"interrupted; the checkpoint of step {step} in {str(run_dir)!r} is kept: continue with --resume."
    return "interrupted before a checkpoint was saved: nothing to resume."


def cmd_sample(args) -> None:
    import numpy as np

    from ganlib.data import to_uint8
    from ganlib.env import check_device
    from ganlib.files import atomic_write

    from . import recipes

    out = Path(args.out)
    if out.suffix != ".npz":
        raise GanlibError(f"--out {str(out)!r}: the samples file must end in .npz.")
    if args.device:
        check_device(args.device)
    x, labels, kind = recipes.sample_from_run(args.run_dir, args.num, seed=args.seed, label=args.label,
                                              truncation=args.truncation, device=args.device)
    arrays = {}
    if kind == "points":
        arrays["points"] = x.numpy().astype(np.float32)  # [N, 2]
    else:
        arrays["images"] = to_uint8(x).permute(0, 2, 3, 1).numpy()  # [N, H, W, C] uint8
    if labels is not None:
        arrays["labels"] = labels.numpy().astype(np.int64)
    atomic_write(lambda f: np.savez_compressed(f, **arrays), out)
    key = "points" if kind == "points" else "images"
    print(f"wrote {args.num} samples to {out} ({key} {list(arrays[key].shape)}"
          f"{', labels' if labels is not None else ''})")


def cmd_evaluate(args) -> None:
    from .evaluation import evaluate_file

    print(evaluate_file(args.file, args.data, features=args.features, k=args.k))


def cmd_bench(args) -> None:
    from . import bench

    bench.main(args.names, out=args.out, quick=args.quick)


def cmd_make_exercises(args) -> None:
    from .grading import read_chapter
    from .notebooks import make_exercises

    written = make_exercises(args.solutions, args.exercises)
    print(f"wrote {len(written)} exercise notebook(s) to {args.exercises}: " + ", ".join(p.name for p in written))
    for path in written:  # what `grade` will score, so that a missing or misspelt check shows up now
        chapter = read_chapter(path)
        try:
            chapter.require_checks()
            print(f"  {path.stem}: graded exercises " + ", ".join(e.name for e in chapter.exercises))
        except GanlibError as e:
            print(f"  warning: {e}")


def cmd_set_repo(args) -> None:
    from .repo import project, set_repo

    changed = set_repo(args.root, args.repo)
    repo, tag = project(args.root)
    print(f"links point at https://github.com/{repo} release {tag}; changed {len(changed)} file(s)"
          + (": " + ", ".join(str(p.relative_to(args.root)) for p in changed) if changed else ""))


def cmd_grade(args) -> None:
    from .grading import grade

    grade(args.submissions, args.out, chapter=args.chapter, timeout=args.timeout, jobs=args.jobs,
          extra_checks=args.extra_checks, feedback_dir=args.feedback, memory_mb=args.memory, resume=args.resume,
          weaker_isolation=args.weaker_isolation)


def build_parser() -> argparse.ArgumentParser:
    from ganlib.env import PROFILES

    from . import recipes
    from .datasets import DATASETS

    p = argparse.ArgumentParser(prog="python -m gancourse", description="The GAN course's command line.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model; checkpoints and sample grids go to --out",
                       description="Train MODEL on DATA with the profile's preset (see gancourse/recipes/). On "
                                   "several GPUs: torchrun --standalone --nproc_per_node=N -m gancourse train ...")
    t.add_argument("model", help=f"one of {', '.join(recipes.RECIPES)}")
    t.add_argument("--data", help=f"dataset: {', '.join(DATASETS)}, or folder:PATH (default: the preset's)")
    t.add_argument("--out", required=True, help="run folder for checkpoint.pt, config.json and samples/")
    t.add_argument("--profile", choices=PROFILES, help="compute budget (default: GANLIB_PROFILE, else gpu if "
                                                       "CUDA is available, else cpu)")
    t.add_argument("--steps", type=int, help="total generator steps (default: the preset's)")
    t.add_argument("--batch-size", dest="batch_size", type=int,
                   help="minibatch size, per process under torchrun (default: the preset's)")
    t.add_argument("--accumulate", type=int, metavar="K",
                   help="average the gradients of K micro-batches per update: the batch of K GPUs on one (default 1)")
    t.add_argument("--resolution", type=int, help="image resolution, a power of two (default: the preset's)")
    t.add_argument("--seed", type=int, help="random seed (default 0)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint, with the options it was trained with; "
                        "options given again (--steps, --set lr_g=...) apply from there on")
    t.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: cuda when available)")
    t.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="override a training option (a field of TrainConfig in ganlib/options.py), e.g. "
                        "--set lr_g=1e-4 (repeatable)")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="write N samples of a trained run to an .npz file",
                       description="Images go under key 'images' (uint8, N x H x W x C), 2-D points under "
                                   "'points' (float32, N x 2), and labels under 'labels' for conditional models.")
    s.add_argument("run_dir", help="a run folder written by `train`")
    s.add_argument("--num", type=int, default=1000, help="number of samples (default 1000)")
    s.add_argument("--out", required=True, help="output file, FILE.npz")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--class", dest="label", type=int, help="conditional models: sample only this class")
    s.add_argument("--truncation", type=float, help="truncation (models that support it)")
    s.add_argument("--device", help="torch device (default: cuda when available)")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("evaluate", help="print the metrics of a samples file",
                       description="Fréchet distance, KID, precision and recall against the training data, "
                                   "next to real held-out data at the same N; for images also the distance "
                                   "to the nearest training image and the classifier's classes and "
                                   "confidence; for 2-D points also mode coverage.")
    e.add_argument("file", help="an .npz written by `sample`")
    e.add_argument("--data", required=True, help="the dataset the samples imitate, e.g. ring8 or digits")
    e.add_argument("--features", choices=("classifier", "fid", "inception"), default="classifier",
                   help="image features: the offline classifier of the dataset (default); fid: the Inception-v3 "
                        "of the FID papers through torch-fidelity (pip install \"ganlib[fid]\"; weights "
                        "downloaded once), comparable with papers at 50,000 samples; inception: torchvision's "
                        "ImageNet Inception-v3 (downloaded once), not comparable with papers")
    e.add_argument("--k", type=int, default=3, help="neighbours for precision and recall (default 3)")
    e.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("bench", help="run benchmarks and write docs/benchmarks.md",
                       description="Run the named benchmarks (default: all) and update their sections of "
                                   "the benchmarks file, with the command, machine and date.")
    from .bench import BENCHMARKS

    b.add_argument("names", nargs="*", metavar="NAME",
                   help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    b.add_argument("--out", default="docs/benchmarks.md", help="the file to update (default docs/benchmarks.md)")
    b.add_argument("--quick", action="store_true", help="tiny budgets, to check that the benchmarks run")
    b.set_defaults(func=cmd_bench)

    m = sub.add_parser("make-exercises", help="regenerate exercises/ from solutions/",
                       description="Replace each ### BEGIN SOLUTION ... ### END SOLUTION region with a stub, "
                                   "drop solution-only cells, clear outputs and metadata.")
    m.add_argument("--solutions", default="solutions", help="source folder (default solutions)")
    m.add_argument("--exercises", default="exercises", help="output folder (default exercises)")
    m.set_defaults(func=cmd_make_exercises)

    r = sub.add_parser("set-repo", help="point the badges, the notebooks' first cells and pyproject.toml at a fork",
                       description="Rewrite the repository URL in pyproject.toml, the README's Colab badges and "
                                   "every notebook's first cell, and point the badges and installs at the release "
                                   "tag v<version> of pyproject.toml. Without OWNER/NAME: keep the repository, "
                                   "update the tag (after changing the version).")
    r.add_argument("repo", nargs="?", metavar="OWNER/NAME", help="the GitHub repository, e.g. my-name/gan-course")
    r.add_argument("--root", type=Path, default=Path("."), help="the course folder (default: the current one)")
    r.set_defaults(func=cmd_set_repo)

    from .grading import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT

    g = sub.add_parser("grade", help="grade a folder of submitted notebooks into a CSV and feedback files",
                       description="Grade every submission in SUBMISSIONS_DIR (one notebook per student, any file "
                                   "name, or one folder per student) with the chapter's exercise checks. Each "
                                   "submission runs confined in a process of its own with a time limit, a memory "
                                   "limit and one CPU thread, and the checks judge what it returns from a trusted "
                                   "process; writes one CSV row and one feedback file per student.")
    g.add_argument("submissions", metavar="SUBMISSIONS_DIR", help="folder of submitted notebooks (or one notebook)")
    g.add_argument("--out", required=True, help="the grades file, FILE.csv")
    g.add_argument("--chapter", help="chapter number or name (e.g. 01), or the chapter's solution or exercise "
                                     "notebook (default: the chapter the submissions look like)")
    g.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds one submission may run in all (default {DEFAULT_TIMEOUT:g})")
    g.add_argument("--jobs", type=int, help="submissions graded in parallel (default: the number of CPU cores)")
    g.add_argument("--extra-checks", dest="extra_checks", metavar="FILE.py",
                   help="private checks: a Python file with functions check_<exercise>(fn), run after the "
                        "public ones and reported in columns extra:<exercise>")
    g.add_argument("--feedback", help="folder for the feedback files (default: beside the CSV, <name>-feedback)")
    g.add_argument("--memory", type=int, default=DEFAULT_MEMORY_MB,
                   help=f"MB a submission may allocate beyond the libraries (default {DEFAULT_MEMORY_MB})")
    g.add_argument("--resume", action="store_true",
                   help="keep the rows of the --out file for students whose notebook is unchanged (same path and "
                        "content) and grade only the others, e.g. after a run was interrupted")
    g.add_argument("--weaker-isolation", dest="weaker_isolation", action="store_true",
                   help="where Linux namespaces are not available, grade anyway with Landlock, a user id per job "
                        "(as root) and a process sweep, accepting weaker isolation (see the README)")
    g.set_defaults(func=cmd_grade)
    return p


def main(argv: list[str] | None = None) -> int:
    args = None
    try:  # Ctrl-C anywhere, even while torch is imported: one line
        args = build_parser().parse_args(argv)
        args.func(args)
    except GanlibError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a write that failed outside the checkpoint (a sample grid, say): one line too
        where = f" ({e.filename})" if e.filename else ""
        print(f"error: {e.strerror or e}{where}: free some disk space, or check the folder's permissions.",
              file=sys.stderr)
        return 2
    except Stopped as e:
        print(e, file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(_interrupted(args), file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

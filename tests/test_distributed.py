"""Training on several processes (ganlib.distributed), on the CPU with gloo.

Two processes are spawned once for the whole module (starting a process costs seconds); they run every
scenario below in turn and save what they saw, and the tests compare that with each other and with
single-process runs made here.
"""

import contextlib
import io
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from gancourse import recipes
from gancourse.__main__ import main
from ganlib import distributed
from ganlib.checkpoints import load_checkpoint_file
from ganlib.data import load
from ganlib.errors import GanlibError
from ganlib.models import mlp
from ganlib.train import TrainConfig, Trainer

WORLD = 2
POOL = torch.randn(4000, 4, generator=torch.Generator().manual_seed(0))  # latents shared by all runs


class PooledLatents(Trainer):
    """Takes the latents of each global batch from POOL in order, process r its r-th share, so that one
    process with batch 2B and two with batch B see the same latents."""

    used = 0

    def sample_latents(self, n):
        start = self.used + self.rank * n
        self.used += n * self.world_size
        return POOL[start: start + n], None


def mlp_trainer(batch, **cfg):
    torch.manual_seed(0)
    G, D = mlp.MLPGenerator(z_dim=4), mlp.MLPDiscriminator()
    if distributed.rank() > 0:  # other initial weights in process 1: the trainer must replace them by process 0's
        G, D = mlp.MLPGenerator(z_dim=4), mlp.MLPDiscriminator()
    return PooledLatents(G, D, load("ring8"), TrainConfig(batch_size=batch, betas=(0.0, 0.99), **cfg), device="cpu")


EQUIVALENCE = {  # name: (per-process batch, options) of the two-process run; the one-process run has batch 32
    "lazy-r1": (16, dict(steps=3, d_steps=2, r1_gamma=1.0, r1_every=2)),
    "accumulate": (8, dict(steps=3, accumulate=2)),
}


def state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, folder, ports):
    """One of the two processes: run each scenario, save what it saw to folder/<scenario>-<rank>.pt."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=WORLD)
    save = lambda name, obj: torch.save(obj, folder / f"{name}-{rank}.pt")

    # the dcgan recipe (batch norm in G), lazy R1, accumulation; different initial weights per process
    torch.manual_seed(rank)
    t = recipes.make_trainer("dcgan", profile="smoke", device="cpu", steps=4, accumulate=2, r1_every=2)
    t.train(progress=False)
    save("dcgan", {"G": state(t.G), "D": state(t.D), "ema": t.G_ema is not None, "images": t.images_seen,
                   "history": t.history, "z": t.sample_latents(3)[0]})

    copies = {}  # every recipe, with its chapter's trainer: the copies must stay equal
    for name in recipes.RECIPES:
        torch.manual_seed(rank)
        t = recipes.make_trainer(name, profile="smoke", device="cpu", steps=4)
        t.train(progress=False)
        copies[name] = {f"{net}.{k}": p.detach().clone() for net in ("G", "D")
                        for k, p in getattr(t, net).named_parameters()}
    save("recipes", copies)

    for name, (batch, cfg) in EQUIVALENCE.items():
        t = mlp_trainer(batch, **cfg)
        t.train(progress=False)
        save(name, {"G": state(t.G), "D": state(t.D), "images": t.images_seen})

    errors = {}
    try:  # synchronised batch norm is CUDA-only in PyTorch
        recipes.make_trainer("dcgan", profile="smoke", device="cpu", sync_batchnorm=True)
    except GanlibError as e:
        errors["sync_batchnorm"] = str(e)
    # with sync_batchnorm, G and D get SyncBatchNorm and G_ema keeps plain batch norm (process 0 samples
    # with it alone); the structure only, as PyTorch runs SyncBatchNorm on GPUs only
    checked = distributed.convert_sync_batchnorm
    distributed.convert_sync_batchnorm = lambda module, device: nn.SyncBatchNorm.convert_sync_batchnorm(module)
    synced = recipes.make_trainer("dcgan", profile="smoke", device="cpu", sync_batchnorm=True,
                                  preset_overrides={"D": dict(width=16, d_norm="batch")})
    distributed.convert_sync_batchnorm = checked
    save("sync_batchnorm", {"G": type(synced.G.net[1]).__name__, "D": type(synced.D.net[3]).__name__,
                            "G_ema": synced.G_ema and type(synced.G_ema.net[1]).__name__,
                            "same": synced.G_ema is not None and all(
                                torch.equal(a, b) for a, b in zip(state(synced.G).values(),
                                                                  state(synced.G_ema).values()))})
    lopsided = mlp_trainer(8, steps=1)
    lopsided.D.extra = nn.Parameter(torch.zeros(()))  # used by process 1 only
    lopsided.opt_d.add_param_group({"params": [lopsided.D.extra]})
    plain = lopsided.discriminate
    lopsided.discriminate = lambda x, labels: plain(x, labels) + (lopsided.D.extra if rank == 1 else 0)
    try:
        lopsided.train(progress=False)
    except GanlibError as e:
        errors["lopsided"] = str(e)
    drifted = mlp_trainer(8, steps=2)
    if rank == 1:
        with torch.no_grad():
            next(drifted.G.parameters())[0, 0] += 1e-3  # as if a chapter changed a weight in one process only
    try:
        drifted.train(progress=False)
    except GanlibError as e:
        errors["drifted"] = str(e)
    save("errors", errors)
    dist.destroy_process_group()

    # the command line as torchrun starts it: a fresh run, and one stopped halfway and resumed; StyleGAN, whose
    # trainer adds per-process state (the path-length mean) and draws style mixing and noise at random
    def cli(port, *argv):
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(port))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["train", "stylegan", "--profile", "smoke", "--batch-size", "8", *map(str, argv)])
        return code, out.getvalue(), err.getvalue()

    outputs = [cli(ports[0], "--steps", 6, "--out", folder / "straight"),
               cli(ports[1], "--steps", 3, "--out", folder / "halves"),
               cli(ports[2], "--steps", 6, "--out", folder / "halves", "--resume")]
    os.environ["GANLIB_DATA"] = str(folder / "no-datasets-here")  # and the tests are offline
    outputs.append(cli(ports[3], "--data", "mnist", "--out", folder / "mnist"))
    save("cli", outputs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed")
    mp.start_processes(worker, args=(folder, [free_port() for _ in range(4)]), nprocs=WORLD, start_method="spawn")
    return lambda name: [torch.load(folder / f"{name}-{r}.pt", weights_only=False) for r in range(WORLD)], folder


def test_processes_keep_equal_weights(runs):
    load_run, _ = runs
    a, b = load_run("dcgan")
    for net in ("G", "D"):
        for key in a[net]:
            if "running" not in key and "num_batches" not in key:
                assert torch.equal(a[net][key], b[net][key]), (net, key)
    # batch norm statistics are each process's own (per-process batch norm, as in the authors' code)
    assert not torch.equal(a["G"]["net.1.running_mean"], b["G"]["net.1.running_mean"])
    assert a["ema"] and not b["ema"]  # G_ema lives in process 0 only
    assert a["images"] == b["images"] == 4 * 32 * 2 * WORLD  # steps x batch x accumulate x processes
    drop_time = lambda history: [{k: v for k, v in h.items() if k != "seconds"} for h in history]
    assert drop_time(a["history"]) == drop_time(b["history"])  # logged losses are averaged over the processes
    assert not torch.equal(a["z"], b["z"])  # but the latents differ per process


@pytest.mark.parametrize("name", recipes.RECIPES)
def test_every_chapters_trainer_keeps_equal_copies(runs, name):
    load_run, _ = runs
    a, b = (run[name] for run in load_run("recipes"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", EQUIVALENCE)
def test_two_processes_equal_one_with_twice_the_batch(runs, name):
    load_run, _ = runs
    two = load_run(name)[0]
    batch, cfg = EQUIVALENCE[name]
    one = mlp_trainer(32, **dict(cfg, accumulate=1))
    initial = {net: state(getattr(one, net)) for net in ("G", "D")}
    one.train(progress=False)
    assert two["images"] == one.images_seen
    for net in ("G", "D"):
        for key, p in state(getattr(one, net)).items():
            assert torch.allclose(two[net][key], p, atol=1e-6, rtol=1e-5), (net, key)
        assert any(not torch.allclose(p, initial[net][k]) for k, p in two[net].items()), f"{net} did not train"


def test_sync_batchnorm_in_the_trained_copies_only(runs):
    load_run, _ = runs
    main_process, other = load_run("sync_batchnorm")
    assert main_process == {"G": "SyncBatchNorm", "D": "SyncBatchNorm", "G_ema": "BatchNorm2d", "same": True}
    assert other["G"] == "SyncBatchNorm" and other["G_ema"] is None


def test_steps_that_differ_between_processes_fail_clearly(runs):
    load_run, _ = runs
    errors = load_run("errors")
    for e in errors:
        assert "sync_batchnorm needs GPUs" in e["sync_batchnorm"]
        assert "computed gradients for different parts of D" in e["lopsided"]
        assert "copies of G differ" in e["drifted"]


def test_command_line_under_torchrun_resumes_exactly(runs):
    load_run, folder = runs
    main_out, other_out = load_run("cli")
    assert [code for code, _, _ in main_out[:3] + other_out[:3]] == [0] * 6
    assert "batch 8 per process x 2 processes = global batch 16" in main_out[0][1]
    assert "resuming stylegan from step 3" in main_out[2][1]
    assert all(out == "" for _, out, _ in other_out)  # only process 0 speaks
    for code, _, err in (main_out[3], other_out[3]):  # a dataset process 0 cannot get stops every process
        assert code == 2 and "mnist is not in" in err and "downloads are off" in err
    straight, resumed = load_checkpoint_file(folder / "straight"), load_checkpoint_file(folder / "halves")
    assert resumed["step"] == straight["step"] == 6 and len(resumed["processes"]) == WORLD
    assert resumed["images_seen"] == straight["images_seen"] == 6 * 8 * WORLD
    for net in ("G", "D", "G_ema"):
        for key, value in straight[net].items():
            assert torch.equal(value, resumed[net][key]), (net, key)
    assert sorted(p.name for p in (folder / "straight").iterdir()) == ["checkpoint.pt", "config.json", "history.csv",
                                                                        "samples"]


def test_accumulate_on_the_command_line(tmp_path, capsys):
    code = main(["train", "gan", "--profile", "smoke", "--steps", "2", "--accumulate", "3", "--out", str(tmp_path)])
    assert code == 0
    assert "batch 256 x 3 accumulated = global batch 768" in capsys.readouterr().out
    assert load_checkpoint_file(tmp_path)["images_seen"] == 2 * 768


def test_a_checkpoint_of_two_processes_resumes_in_one(runs, tmp_path):
    _, folder = runs
    (tmp_path / "checkpoint.pt").write_bytes((folder / "halves" / "checkpoint.pt").read_bytes())
    t = recipes.make_trainer("stylegan", profile="smoke", device="cpu", batch_size=8, steps=8, run_dir=tmp_path)
    with pytest.warns(UserWarning, match="trained by 2 process.*global batch changes from 16 to 8"):
        t.load_checkpoint()
    assert t.step == 6
    t.train(progress=False)
    assert t.images_seen == 6 * 16 + 2 * 8

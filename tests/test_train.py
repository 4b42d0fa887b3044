import math

import pytest
import torch

from ganlib import recipes
from ganlib.data import load
from ganlib.errors import GanlibError, TrainingDiverged
from ganlib.models import dcgan, mlp
from ganlib.train import BatchStream, TrainConfig, Trainer, load_checkpoint_file


def tiny_dcgan(tmp_path, **cfg):
    return recipes.make_trainer("dcgan", profile="smoke", run_dir=tmp_path, device="cpu", **cfg)


def params(module):
    return [p.detach().clone() for p in module.state_dict().values()]


def test_batch_stream_is_a_permutation_per_epoch_and_resumes():
    s = BatchStream(10, 3, seed=0)
    first_epoch = torch.cat([s.next() for _ in range(3)] + [s.next()[:1]])  # 10 = 3+3+3+1
    assert sorted(first_epoch.tolist()) == list(range(10))
    state = s.state_dict()
    rest = [s.next() for _ in range(5)]
    t = BatchStream(10, 3, seed=0)
    t.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(rest, [t.next() for _ in range(5)]))


def test_batch_stream_ranks_are_disjoint():
    a, b = BatchStream(8, 2, 0, rank=0, world_size=2), BatchStream(8, 2, 0, rank=1, world_size=2)
    got = torch.cat([a.next(), b.next(), a.next(), b.next()])
    assert sorted(got.tolist()) == list(range(8))


@pytest.mark.parametrize("model,cfg", [("dcgan", {}), ("gan", {"ema_beta": 0.9, "gp_weight": 1.0}),
                                       ("dcgan", {"r1_gamma": 1.0, "r1_every": 2, "d_steps": 2,
                                                  "lr_decay_start": 0.5})])
def test_exact_resume(tmp_path, model, cfg):
    """N steps straight equal N/2 steps, a new process-like restart from the checkpoint, N/2 steps."""
    torch.manual_seed(123)
    straight = recipes.make_trainer(model, profile="smoke", run_dir=tmp_path / "a", device="cpu", steps=8, **cfg)
    straight.train(progress=False)
    torch.manual_seed(123)
    half = recipes.make_trainer(model, profile="smoke", run_dir=tmp_path / "b", device="cpu", steps=8, **cfg)
    half.train(steps=4, progress=False)
    half.save_checkpoint()
    torch.manual_seed(999)  # the restart must not depend on the global RNG
    resumed = recipes.make_trainer(model, profile="smoke", run_dir=tmp_path / "b", device="cpu", steps=8, **cfg)
    resumed.load_checkpoint()
    assert resumed.step == 4
    resumed.train(progress=False)
    for name in ("G", "D", "G_ema"):
        a, b = getattr(straight, name), getattr(resumed, name)
        if a is None:
            continue
        for p, q in zip(params(a), params(b)):
            assert torch.equal(p, q), name
    assert straight.opt_d.state_dict()["state"][0]["exp_avg"].equal(resumed.opt_d.state_dict()["state"][0]["exp_avg"])
    assert straight.images_seen == resumed.images_seen


def test_ema_follows_the_formula():
    G, D = mlp.MLPGenerator(z_dim=2), mlp.MLPDiscriminator()
    t = Trainer(G, D, load("ring8"), TrainConfig(steps=1, batch_size=8, ema_half_life_kimg=0.008), device="cpu")
    before = [p.clone() for p in t.G_ema.parameters()]
    t.train(progress=False)
    beta = 0.5 ** (8 / 8)  # batch 8, half-life 8 images
    for e, b, p in zip(t.G_ema.parameters(), before, t.G.parameters()):
        assert torch.allclose(e, beta * b + (1 - beta) * p)


def test_ema_start_copies_G():
    t = Trainer(mlp.MLPGenerator(z_dim=2), mlp.MLPDiscriminator(), load("ring8"),
                TrainConfig(steps=3, batch_size=8, ema_beta=0.99, ema_start=5), device="cpu")
    t.train(progress=False)
    assert all(torch.equal(e, p) for e, p in zip(t.G_ema.parameters(), t.G.parameters()))


def test_lr_decay_schedule():
    t = Trainer(mlp.MLPGenerator(z_dim=2), mlp.MLPDiscriminator(), load("ring8"),
                TrainConfig(steps=10, batch_size=8, lr_g=1.0, lr_d=2.0, lr_decay_start=0.6), device="cpu")
    factors = []
    for _ in range(10):
        factors.append(t.lr_factor())
        t.train_step()
    assert factors[:6] == [1.0] * 6 and factors[6:] == pytest.approx([1.0, 0.75, 0.5, 0.25])
    assert t.opt_d.param_groups[0]["lr"] == pytest.approx(2.0 * 0.25)


def test_d_steps_and_images_seen():
    t = Trainer(mlp.MLPGenerator(z_dim=2), mlp.MLPDiscriminator(), load("ring8"),
                TrainConfig(steps=3, batch_size=8, d_steps=2), device="cpu")
    t.train(progress=False)
    assert t.step == 3 and t.images_seen == 3 * 2 * 8


def test_checkpoint_is_atomic_and_complete(tmp_path):
    t = tiny_dcgan(tmp_path, steps=4, sample_every=2)
    t.train(progress=False)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["checkpoint.pt", "config.json", "history.csv", "samples"]  # no temporary files left behind
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step0000002.png", "step0000004.png"]
    state = load_checkpoint_file(tmp_path)
    assert state["step"] == 4 and state["spec"]["family"] == "dcgan" and len(state["history"]) >= 1


def test_nan_guard_keeps_last_good_checkpoint(tmp_path):
    t = tiny_dcgan(tmp_path, steps=20, checkpoint_every=5, log_every=5)
    t.train(steps=5, progress=False)
    assert load_checkpoint_file(tmp_path)["step"] == 5
    with torch.no_grad():
        next(t.D.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"became nan by step 10; the last good checkpoint \(step 5\)"):
        t.train(progress=False)
    assert load_checkpoint_file(tmp_path)["step"] == 5


def test_corrupt_and_foreign_checkpoints(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(GanlibError, match="not a readable ganlib checkpoint"):
        load_checkpoint_file(tmp_path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "checkpoint.pt")
    with pytest.raises(GanlibError, match="not a ganlib checkpoint"):
        load_checkpoint_file(tmp_path)
    with pytest.raises(GanlibError, match="no checkpoint"):
        load_checkpoint_file(tmp_path / "elsewhere")


def test_mismatched_checkpoint(tmp_path):
    tiny_dcgan(tmp_path, steps=2).train(progress=False)
    other = recipes.make_trainer("dcgan", profile="smoke", run_dir=tmp_path, device="cpu",
                                 preset_overrides={"G": {"z_dim": 7, "width": 16}})
    with pytest.raises(GanlibError, match="was written for the model dcgan"):
        other.load_checkpoint()
    # no spec to compare: the weights themselves do not fit
    G, D = dcgan.Generator(16, 1, z_dim=5, width=8), dcgan.Discriminator(16, 1, width=8)
    bare = Trainer(G, D, load("digits", 16), TrainConfig(), run_dir=tmp_path, device="cpu")
    with pytest.raises(GanlibError, match="does not fit these networks"):
        bare.load_checkpoint()


def test_conditional_model_needs_labels():
    G, D = dcgan.Generator(16, 1, num_classes=3, width=8), dcgan.Discriminator(16, 1, num_classes=3, width=8)
    pts = load("ring8")
    with pytest.raises(GanlibError, match="needs a labelled dataset"):
        Trainer(G, D, pts, TrainConfig(), device="cpu")


def test_conditional_training_and_grid_labels(tmp_path):
    t = recipes.make_trainer("dcgan", profile="smoke", device="cpu", steps=2,
                             preset_overrides={"G": {"z_dim": 8, "width": 8, "conditional": True}})
    t.train(progress=False)
    assert t.conditional and t.G.num_classes == 10
    x, labels = t.sample(16, labels=t.grid_labels(16))
    assert labels.tolist() == [0] * 8 + [1] * 8 and x.shape == (16, 1, 16, 16)


def test_bad_config():
    with pytest.raises(GanlibError, match="unknown loss"):
        TrainConfig(loss="l2")
    with pytest.raises(GanlibError, match="unknown training option"):
        TrainConfig.from_dict({"stepz": 3})


def test_history_has_finite_losses_and_D_outputs():
    t = Trainer(mlp.MLPGenerator(z_dim=2), mlp.MLPDiscriminator(), load("ring8"),
                TrainConfig(steps=10, batch_size=8, log_every=5), device="cpu")
    t.train(progress=False)
    assert [h["step"] for h in t.history] == [5, 10]
    assert all(math.isfinite(h["loss_d"]) and "D(G(z))" in h for h in t.history)


class PooledLatents(Trainer):
    """Takes latents from a fixed pool in order, so that different batch splits see the same latents."""

    def __init__(self, *args, pool, **kwargs):
        super().__init__(*args, **kwargs)
        self.pool, self.used = pool, 0

    def sample_latents(self, n):
        z = self.pool[self.used: self.used + n]
        self.used += n
        return z, None


@pytest.mark.parametrize("extra", [{}, {"gp_weight": 10.0}, {"r1_gamma": 1.0}])
def test_accumulated_micro_batches_equal_one_large_batch(extra):
    pool = torch.randn(1000, 4, generator=torch.Generator().manual_seed(0))
    results = []
    for batch, k in ((32, 1), (8, 4)):
        torch.manual_seed(0)
        G, D = mlp.MLPGenerator(z_dim=4), mlp.MLPDiscriminator()
        cfg = TrainConfig(steps=3, batch_size=batch, accumulate=k, betas=(0.0, 0.99), **extra)
        t = PooledLatents(G, D, load("ring8"), cfg, device="cpu", pool=pool)
        if "gp_weight" in extra:  # the penalty's mixing weights come from the trainer's RNG, drawn per batch
            t.rng = None
            torch.manual_seed(1)
        t.train(progress=False)
        assert t.images_seen == 3 * 32
        results.append(t)
    for a, b in zip([*results[0].G.parameters(), *results[0].D.parameters()],
                    [*results[1].G.parameters(), *results[1].D.parameters()]):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


def test_config_rejects_nonsense_counts():
    with pytest.raises(GanlibError, match="accumulate must be a whole number"):
        TrainConfig(accumulate=0)

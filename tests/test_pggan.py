"""PGGAN: the growing networks (fade-in in G and D), the growth schedule, the progressive trainer."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from gancourse import recipes
from ganlib.errors import GanlibError
from ganlib.models import pggan
from ganlib.progressive import GrowthSchedule, ProgressiveTrainer, box_downsample
from ganlib.train import TrainConfig

RES = [4, 8, 16, 32]


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    G = pggan.Generator(32, 3, z_dim=16, fmap_base=64, fmap_max=16)
    D = pggan.Discriminator(32, 3, fmap_base=64, fmap_max=16)
    return G, D


def test_channels_follow_the_paper():
    assert [pggan.channels(r, 8192, 512) for r in (4, 8, 16, 32, 64, 128, 256, 512, 1024)] == [
        512, 512, 512, 512, 256, 128, 64, 32, 16]


@pytest.mark.parametrize("res", RES)
def test_shapes_at_every_resolution(nets, res):
    G, D = nets
    z = torch.randn(8, 16)
    for alpha in (0.0, 0.3, 1.0):
        x = G(z, resolution=res, alpha=alpha)
        assert x.shape == (8, 3, res, res)
        assert D(x, alpha=alpha).shape == (8,)
    assert G(z).shape == (8, 3, 32, 32)  # default: the final resolution


@pytest.mark.parametrize("res", RES[1:])
def test_generator_fade_in_at_alpha_0_is_the_upsampled_previous_resolution(nets, res):
    G, _ = nets
    z = torch.randn(4, 16)
    old = G(z, resolution=res // 2, alpha=1.0)
    torch.testing.assert_close(G(z, resolution=res, alpha=0.0), F.interpolate(old, scale_factor=2, mode="nearest"))
    # and in between, the straight line between the two
    new = G(z, resolution=res, alpha=1.0)
    torch.testing.assert_close(G(z, resolution=res, alpha=0.25), 0.75 * pggan.upsample(old) + 0.25 * new,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("res", RES[1:])
def test_discriminator_fade_in_at_alpha_0_sees_the_pooled_image(nets, res):
    _, D = nets
    x = torch.randn(8, 3, res, res)
    torch.testing.assert_close(D(x, alpha=0.0), D(F.avg_pool2d(x, 2), alpha=1.0))
    assert not torch.allclose(D(x, alpha=1.0), D(F.avg_pool2d(x, 2), alpha=1.0))


def _grads(module):
    return {name: p.grad is not None and p.grad.abs().sum().item() > 0 for name, p in module.named_parameters()}


@pytest.mark.parametrize("res,alpha", [(4, 1.0), (16, 1.0), (16, 0.5), (32, 0.5)])
def test_gradients_reach_the_active_blocks_only(res, alpha):
    torch.manual_seed(1)
    G = pggan.Generator(32, 3, z_dim=16, fmap_base=64, fmap_max=16)
    D = pggan.Discriminator(32, 3, fmap_base=64, fmap_max=16)
    D(G(torch.randn(4, 16), resolution=res, alpha=alpha), alpha=alpha).sum().backward()
    level = RES.index(res)
    fading = alpha < 1 and res > 4
    for name, got in _grads(G).items():
        kind, index = name.split(".")[0], name.split(".")[1] if "." in name else None
        if kind in ("dense", "conv4"):
            active = True
        elif kind == "blocks":  # blocks[i] makes resolution RES[i + 1]
            active = int(index) < level
        else:  # to_rgb[i] for RES[i]: the current one, and the previous one while fading
            active = int(index) == level or (fading and int(index) == level - 1)
        assert got == active, f"G {name}: gradient {got}, active {active} at {res}, alpha {alpha}"
    for name, got in _grads(D).items():
        kind, index = name.split(".")[0], name.split(".")[1]
        if kind == "blocks":
            active = int(index) < level
        elif kind == "from_rgb":
            active = int(index) == level or (fading and int(index) == level - 1)
        else:
            active = True
        assert got == active, f"D {name}: gradient {got}, active {active} at {res}, alpha {alpha}"


def test_generator_uses_the_authors_constants():
    G = pggan.Generator(8, 3, z_dim=16, fmap_base=64, fmap_max=16)
    assert math.isclose(G.dense.weight_gain, math.sqrt(2) / 4 / math.sqrt(16))
    assert all(math.isclose(t.weight_gain, 1 / math.sqrt(t.weight.shape[1])) for t in G.to_rgb)  # gain 1
    D = pggan.Discriminator(8, 3, fmap_base=64, fmap_max=16)
    assert math.isclose(D.out.weight_gain, 1 / math.sqrt(D.out.weight.shape[1]))
    assert D.conv4.weight.shape[1] == 17  # 16 channels + the minibatch stddev channel


def test_bad_inputs(nets):
    G, D = nets
    with pytest.raises(GanlibError, match="resolution 64"):
        G(torch.randn(2, 16), resolution=64)
    with pytest.raises(GanlibError, match="alpha 1.5"):
        G(torch.randn(2, 16), resolution=8, alpha=1.5)
    with pytest.raises(GanlibError, match="grey image given to an RGB model"):
        D(torch.zeros(4, 1, 8, 8))
    with pytest.raises(GanlibError, match="square images of 4, 8, 16, 32"):
        D(torch.zeros(4, 3, 12, 12))


# ----------------------------------------------------------------------------------------------------------
# The schedule


def test_schedule_follows_the_authors_lod():
    s = GrowthSchedule(final_resolution=32, start_resolution=4, stable_kimg=600, fade_kimg=600)
    assert s.levels == 3 and s.images_until_final() == 3_600_000
    cases = {0: (4, 1.0), 599_999: (4, 1.0), 600_000: (4, 1.0), 900_000: (8, 0.5), 1_200_000: (8, 1.0),
             1_800_000: (8, 1.0), 1_950_000: (16, 0.25), 3_000_000: (16, 1.0), 3_300_000: (32, 0.5),
             3_600_000: (32, 1.0), 10_000_000: (32, 1.0)}
    for images, (res, alpha) in cases.items():
        got = s.at(images)
        assert got[0] == res and math.isclose(got[1], alpha, abs_tol=1e-9), (images, got)
    assert math.isclose(s.lod(900_000), 2.5) and s.lod(0) == 3 and s.lod(10_000_000) == 0
    # the stage (floor, ceil of lod) changes when a fade starts and when it ends: 6 times from 4 to 32
    stages = [s.stage(i) for i in range(0, 4_000_000, 10_000)]
    assert sum(a != b for a, b in zip(stages, stages[1:])) == 6
    fixed = GrowthSchedule(final_resolution=32, start_resolution=32)
    assert fixed.levels == 0 and fixed.at(0) == (32, 1.0) and fixed.at(10**7) == (32, 1.0)
    with pytest.raises(GanlibError, match="start_resolution 64"):
        GrowthSchedule(final_resolution=32, start_resolution=64)


def test_box_downsample_and_faded_reals():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    torch.testing.assert_close(box_downsample(x, 2), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    torch.testing.assert_close(box_downsample(x, 1), x.mean().reshape(1, 1, 1, 1))
    torch.testing.assert_close(pggan.fade_reals(x, 0.0), pggan.upsample(box_downsample(x, 2)))
    assert torch.equal(pggan.fade_reals(x, 1.0), x)


# ----------------------------------------------------------------------------------------------------------
# The trainer


def _trainer(tmp_path=None, steps=14, **growth):
    torch.manual_seed(0)
    return recipes.make_trainer("pggan", profile="smoke", device="cpu", run_dir=tmp_path, steps=steps,
                                preset_overrides={"trainer": {"growth": dict(stable_kimg=0.032, fade_kimg=0.032,
                                                                             **growth)}})


def test_trainer_grows_fades_reals_and_resets_the_optimisers():
    t = _trainer()
    assert isinstance(t, ProgressiveTrainer) and t.cfg.loss == "wasserstein" and t.cfg.gp_weight == 10
    assert t.cfg.drift == 0.001 and t.cfg.betas == (0.0, 0.99)
    log = []
    adam_steps = lambda tr: int(tr.opt_g.state[tr.G.dense.weight]["step"])  # Adam's own count since its reset
    t.train(callback=lambda tr: log.append((tr.resolution, tr.alpha, tr.optimizer_resets, adam_steps(tr))),
            every=1, progress=False)
    # batch 16, 32 images stable then 32 fading; a step runs at the stage of the images shown before it:
    # 0, 16, 32 images: 4x4 (at 32, lod is exactly 2); 48: 8x8 at alpha 0.5; 64 to 96: 8x8; 112: 16x16 fading
    assert [r for r, *_ in log] == [4, 4, 4, 8, 8, 8, 8, 16, 16, 16, 16, 16, 16, 16]
    assert [a for _, a, *_ in log][:9] == [1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 0.5, 1.0]
    assert [n for *_, n in log] == [1, 2, 3, 1, 1, 2, 3, 1, 1, 2, 3, 4, 5, 6]  # fresh Adam when a stage begins
    assert log[-1][2] == 4
    real, _ = t.real_batch()
    assert real.shape == (16, 3, 16, 16) and t.sample(4)[0].shape == (4, 3, 16, 16)
    t.alpha, t.resolution = 0.0, 8  # while 8 fades in, reals are the 4x4 version blown up
    real, _ = t.real_batch()
    torch.testing.assert_close(real, pggan.upsample(F.avg_pool2d(real, 2)))


@pytest.mark.filterwarnings("ignore:8 steps of batch 16 end at 16x16")  # it stops as 16x16 fades in
def test_resume_across_a_resolution_change_is_exact(tmp_path):
    a = _trainer(tmp_path / "a", steps=8)
    a.train(progress=False)
    b = _trainer(tmp_path / "b", steps=8)
    b.train(steps=4, progress=False)  # the last step before the save fades 8x8 in; the next one ends the fade
    assert b.resolution == 8 and b.alpha == 0.5 and b.stage == (1, 2)
    b.save_checkpoint()
    c = _trainer(tmp_path / "b", steps=8).load_checkpoint()
    assert c.resolution == 8 and c.stage == b.stage and c.optimizer_resets == 1
    c.train(progress=False)
    for p, q in zip(a.G_ema.state_dict().values(), c.G_ema.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    for p, q in zip(a.D.state_dict().values(), c.D.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    other = _trainer(tmp_path / "b", steps=8, start_resolution=8)
    with pytest.raises(GanlibError, match="resume with the same schedule"):
        other.load_checkpoint()


def test_a_run_too_short_to_reach_the_final_resolution_warns():
    # batch 16, 32 images stable and 32 fading per doubling: 16x16 is faded in after 128 images, so the
    # 9th step (after 128 images) is the first at 16x16 with alpha 1
    with pytest.warns(UserWarning, match=r"8 steps of batch 16 end at 16x16 \(alpha 0.50\), before 16x16 is "
                                         r"faded in: that takes 9 steps"):
        _trainer(steps=8)
    with pytest.warns(UserWarning, match=r"end at 8x8 \(alpha 1.00\)"):
        _trainer(steps=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _trainer(steps=9)
        _trainer(steps=1, start_resolution=16)  # the fixed baseline is at its final resolution from the start


def test_trainer_rejects_a_schedule_that_does_not_fit(tmp_path):
    torch.manual_seed(0)
    G = pggan.Generator(16, 3, z_dim=8, fmap_base=32, fmap_max=8)
    D = pggan.Discriminator(16, 3, fmap_base=32, fmap_max=8)
    from ganlib import data

    with pytest.raises(GanlibError, match="make all three the same"):
        ProgressiveTrainer(G, D, data.load("shapes", 8), TrainConfig(steps=1), device="cpu")  # G grows to 16


def test_budget_scaled_to_another_final_resolution():
    """budget_images keeps the phases per doubling and the images at the final resolution of the preset."""
    from gancourse.recipes.pggan import budget_images

    p = recipes.preset("pggan", "cpu")
    growth, batch, steps = p["trainer"]["growth"], p["train"]["batch_size"], p["train"]["steps"]
    phase = round((growth["stable_kimg"] + growth["fade_kimg"]) * 1000)  # images per doubling
    shown = GrowthSchedule(32, **growth).images_before(steps, batch)  # what the preset's steps show at 32x32
    assert p["resolution"] == 32 and budget_images(p, 32) == shown
    assert budget_images(p, 16) == shown - phase and budget_images(p, 64) == shown + phase


# ----------------------------------------------------------------------------------------------------------
# The minibatch per resolution


def test_the_minibatch_follows_the_resolution_the_networks_run_at():
    """With minibatch {4: 8, 8: 32} (16 elsewhere), every step shows D as many real images as the schedule gives
    for the stage it starts at, and G draws as many latents, in D's step and in its own."""
    t = _trainer(steps=12, minibatch={4: 8, 8: 32})
    latents = []
    t.G.register_forward_pre_hook(lambda module, args, kwargs: latents.append(args[0].shape[0]), with_kwargs=True)
    log = []

    def watch(tr):
        log.append((tr.resolution, tr.images_seen))

    t.train(callback=watch, every=1, progress=False)
    # 32 images stable at 4x4 in batches of 8, then 8x8 fades in (at 40 images: alpha 0.25) in batches of 32;
    # at 104 images 16x16 fades in, with the default batch of 16
    assert [r for r, _ in log] == [4] * 5 + [8] * 2 + [16] * 5
    assert [n for _, n in log] == [8, 16, 24, 32, 40, 72, 104, 120, 136, 152, 168, 184]
    assert latents == [b for b in [8] * 5 + [32] * 2 + [16] * 5 for _ in "dg"]  # one batch for D's step, one for G's
    s = t.schedule
    assert [s.images_before(k, 16) for k in (0, 5, 7, 12)] == [0, 40, 104, 184]
    assert s.steps_until(104, 16) == 7 and s.steps_until(105, 16) == 8 and s.steps_until(0, 16) == 0
    assert s.images_before(2, 16, per_batch=2) == 32  # two micro-batches (or processes) of 8 per step
    assert t.real_batch()[0].shape[0] == 16


def test_resume_with_a_minibatch_per_resolution_is_exact(tmp_path):
    a = _trainer(tmp_path / "a", steps=10, minibatch={4: 8, 8: 32})
    a.train(progress=False)
    b = _trainer(tmp_path / "b", steps=10, minibatch={4: 8, 8: 32})
    b.train(steps=6, progress=False)  # the next step is the last at 8x8, in a batch of 32
    assert b.resolution == 8 and b.micro_batch() == 32
    b.save_checkpoint()
    c = _trainer(tmp_path / "b", steps=10, minibatch={4: 8, 8: 32}).load_checkpoint()
    assert c.resolution == 8 and c.micro_batch() == 32 and c.images_seen == b.images_seen == 72
    c.train(progress=False)
    assert c.images_seen == a.images_seen == 152
    for p, q in zip(a.G_ema.state_dict().values(), c.G_ema.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    for p, q in zip(a.D.state_dict().values(), c.D.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    with pytest.raises(GanlibError, match="resume with the same schedule"):
        _trainer(tmp_path / "b", steps=10, minibatch={4: 8, 8: 32, 16: 32}).load_checkpoint()


def test_bad_minibatches_get_one_line_errors():
    with pytest.raises(GanlibError, match="minibatch at 8x8 must be a whole number >= 1, got 0"):
        GrowthSchedule(32, minibatch={8: 0})
    with pytest.raises(GanlibError, match="a minibatch resolution 12 is not supported"):
        GrowthSchedule(32, minibatch={12: 8})
    with pytest.raises(GanlibError, match="keys are resolutions"):
        GrowthSchedule(32, minibatch={"8": 8})
    # 5 steps of 8 images, then 8x8 fades in with batches of 16: the 6th step starts after 40 images, and
    # 16x16 is in after 128 images, 11 steps, so the 12th step is the first there
    with pytest.warns(UserWarning, match=r"6 steps of batch 16 \(by resolution \{4: 8\}\) end at 8x8 \(alpha 0.25\)"
                                         r".* that takes 12 steps"):
        _trainer(steps=6, minibatch={4: 8})

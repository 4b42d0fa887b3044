"""PGGAN: the growing networks (fade-in in G and D), the growth schedule, the progressive trainer."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from gancourse import recipes
from ganlib import layers
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
        if kind in ("dense", "dense_bias", "conv4"):
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


# ----------------------------------------------------------------------------------------------------------
# The authors' computation (tkarras/progressive_growing_of_gans, G_paper and D_paper), stated here on its own
# from the paper and their algorithm, without ganlib's helpers; ganlib's networks must agree with it.

SQRT2 = math.sqrt(2)


def he(weight: torch.Tensor, gain: float = SQRT2) -> torch.Tensor:
    """The authors' get_weight: the stored N(0, 1) weight times gain / sqrt(fan_in), fan_in = all but dim 0."""
    return weight * (gain / math.sqrt(weight[0].numel()))


def pn(x: torch.Tensor) -> torch.Tensor:
    """Pixel norm: x * rsqrt(mean over channels of x^2 + 1e-8)."""
    return x / torch.sqrt((x * x).mean(dim=1, keepdim=True) + 1e-8)


def act(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x, 0.2 * x)


def conv(x, p, name, gain=SQRT2):
    w = p[f"{name}.weight"]
    return F.conv2d(x, he(w, gain), padding=w.shape[-1] // 2) + p[f"{name}.bias"].view(1, -1, 1, 1)


def upscale(x):  # each pixel repeated into a 2x2 block
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def downscale(x):  # the mean of each 2x2 block
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))


def lerp_clip(a, b, t):  # the authors' blend: t = 0 gives a, t = 1 gives b
    t = min(max(t, 0.0), 1.0)
    return a + (b - a) * t


def mbstd(x, group_size=4):
    """The authors' minibatch_stddev_layer, one feature, written as a loop over the groups: group j holds the
    samples j, j + M, j + 2M, ... (M = N / G); biased variance over the group, sqrt(. + 1e-8), averaged over
    channels and pixels, tiled over the group's samples and the pixels, appended as a channel."""
    n = x.shape[0]
    g = min(group_size, n)
    m = n // g
    stat = torch.empty(n)
    for j in range(m):
        members = list(range(j, n, m))
        group = x[members]  # [G, C, H, W]
        std = torch.sqrt(((group - group.mean(dim=0)) ** 2).mean(dim=0) + 1e-8)
        stat[members] = std.mean()
    return torch.cat([x, stat.view(n, 1, 1, 1).expand(n, 1, *x.shape[2:])], dim=1)


def authors_G(p: dict, z: torch.Tensor, resolutions: list[int], res: int, alpha: float) -> torch.Tensor:
    """G_paper with structure "linear": lod_in = 1 - alpha above the new level; `p` G's parameters by name."""
    c4 = p["conv4.weight"].shape[0]
    x = pn(z)
    x = F.linear(x, he(p["dense.weight"], SQRT2 / 4))  # dense without bias, gain sqrt(2)/4
    x = x.view(-1, c4, 4, 4) + p["dense_bias"].view(1, -1, 1, 1)  # reshape, then one bias per channel
    x = pn(act(x))
    x = pn(act(conv(x, p, "conv4")))
    level = resolutions.index(res)
    img = conv(x, p, "to_rgb.0", gain=1.0)
    for k in range(1, level + 1):  # blocks[k - 1] makes resolutions[k]
        x = upscale(x)
        x = pn(act(conv(x, p, f"blocks.{k - 1}.conv0")))
        x = pn(act(conv(x, p, f"blocks.{k - 1}.conv1")))
        new = conv(x, p, f"to_rgb.{k}", gain=1.0)
        t = (1 - alpha) if k == level else 0.0  # lod_in - lod for this level
        img = lerp_clip(new, upscale(img), t)
    return img


def authors_D(p: dict, img: torch.Tensor, resolutions: list[int], alpha: float) -> torch.Tensor:
    """D_paper with structure "linear": the blend at the top level, then the blocks down to 4x4 and the head."""
    level = resolutions.index(img.shape[-1])
    x = act(conv(img, p, f"from_rgb.{level}"))
    for k in range(level, 0, -1):
        x = act(conv(x, p, f"blocks.{k - 1}.conv0"))
        x = act(conv(x, p, f"blocks.{k - 1}.conv1"))
        x = downscale(x)
        if k == level:  # the old path: fromRGB of the downscaled image
            img = downscale(img)
            x = lerp_clip(x, act(conv(img, p, f"from_rgb.{k - 1}")), 1 - alpha)
    x = mbstd(x, 4)
    x = act(conv(x, p, "conv4"))
    x = act(F.linear(x.flatten(1), he(p["dense.weight"])) + p["dense.bias"])
    return (F.linear(x, he(p["out.weight"], 1.0)) + p["out.bias"]).flatten()  # gain 1 for the score


def _randomised(module: torch.nn.Module, seed: int) -> dict:
    """Give every bias a random value too (they start at 0), so that where each one enters shows; the params."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, q in module.named_parameters():
            if "bias" in name:
                q.copy_(0.3 * torch.randn(q.shape, generator=g))
    return {name: q.detach().clone() for name, q in module.named_parameters()}


def _close(got, want):
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


@pytest.mark.parametrize("res", RES)
def test_the_whole_generator_is_the_authors(res):
    torch.manual_seed(2)
    G = pggan.Generator(32, 3, z_dim=24, fmap_base=128, fmap_max=32)  # 32, 32, 32, 16 channels
    p = _randomised(G, 3)
    z = torch.randn(6, 24)
    with torch.no_grad():
        for alpha in (0.0, 0.3, 1.0):
            _close(G(z, resolution=res, alpha=alpha), authors_G(p, z, G.resolutions, res, alpha))


@pytest.mark.parametrize("res", RES)
def test_the_whole_discriminator_is_the_authors(res):
    torch.manual_seed(4)
    D = pggan.Discriminator(32, 3, fmap_base=128, fmap_max=32)
    p = _randomised(D, 5)
    x = torch.randn(8, 3, res, res)
    with torch.no_grad():
        for alpha in (0.0, 0.3, 1.0):
            _close(D(x, alpha=alpha), authors_D(p, x, D.resolutions, alpha))
        # a batch of 12 (three groups of 4) and one of 2 (a single group of 2)
        for n in (12, 2):
            y = torch.randn(n, 3, res, res)
            _close(D(y, alpha=0.3), authors_D(p, y, D.resolutions, 0.3))


def test_the_first_layer_has_one_bias_per_channel():
    """C biases, not 16 * C (where they enter is pinned by the whole-generator test above)."""
    G = pggan.Generator(8, 3, z_dim=16, fmap_base=64, fmap_max=16)
    assert G.dense.bias is None and G.dense_bias.shape == (16,)
    assert sum(q.numel() for n, q in G.named_parameters() if n.startswith("dense")) == 16 * 16 * 16 + 16


def test_equalized_layers_scale_their_stored_weights_at_run_time():
    torch.manual_seed(6)
    lin = layers.EqualizedLinear(400, 300)
    conv3 = layers.EqualizedConv2d(20, 30, 3)
    # stored ~ N(0, 1): the He constant is not in the initialisation
    for q in (lin.weight, conv3.weight):
        assert abs(float(q.detach().std()) - 1) < 0.02 and abs(float(q.detach().mean())) < 0.02
    x = torch.randn(5, 400)
    with torch.no_grad():
        lin.bias.normal_()
        conv3.bias.normal_()
    torch.testing.assert_close(lin(x), x @ (lin.weight * math.sqrt(2 / 400)).T + lin.bias)
    y = torch.randn(2, 20, 6, 6)
    want = F.conv2d(y, conv3.weight * math.sqrt(2 / (20 * 9)), padding=1) + conv3.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(conv3(y), want, rtol=1e-5, atol=1e-5)
    # one Adam step of the stored weight moves the effective weight by lr * He constant (not by lr)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-3, betas=(0.0, 0.99))
    before = lin.weight.detach().clone()
    lin(x).sum().backward()
    opt.step()
    step = (lin.weight.detach() - before).abs()
    torch.testing.assert_close(step, torch.full_like(step, 1e-3), rtol=1e-3, atol=0)


def test_pixel_norm_is_the_formula_with_eps_1e_8():
    x = torch.randn(3, 7, 5, 5) * torch.rand(3, 1, 5, 5) * 10
    _close(layers.pixel_norm(x), pn(x))
    tiny = torch.full((1, 4, 1, 1), 1e-5)  # mean square 1e-10: the eps (1e-8) dominates
    torch.testing.assert_close(layers.pixel_norm(tiny), tiny / math.sqrt(1e-10 + 1e-8))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 8, 12, 16])
def test_minibatch_stddev_is_the_authors_layer(n):
    x = torch.randn(n, 5, 4, 4) * torch.arange(1, n + 1).float().view(n, 1, 1, 1)  # samples differ in spread
    _close(layers.minibatch_stddev(x, 4), mbstd(x, 4))


@pytest.mark.parametrize("n", [6, 10])
def test_minibatch_stddev_rejects_a_batch_that_is_not_a_multiple_of_the_group(n):
    with pytest.raises(GanlibError, match=f"batch size {n} is not a multiple of the group size 4"):
        layers.minibatch_stddev(torch.randn(n, 2, 4, 4), 4)


@pytest.mark.parametrize("res", RES[1:])
def test_faded_reals_are_the_authors_process_reals(res):
    x = torch.randn(3, 3, res, res)
    for alpha in (0.0, 0.3, 1.0):
        # process_reals: x <- lerp(x, upscale(downscale(x)), lod - floor(lod)), lod fraction = 1 - alpha
        want = x + (upscale(downscale(x)) - x) * (1 - alpha)
        _close(pggan.fade_reals(x, alpha), want)
    border = pggan.fade_reals(x, 0.0)  # at alpha 0 each 2x2 block, borders included, holds its mean
    torch.testing.assert_close(border[..., -1, -1], x[..., -2:, -2:].mean(dim=(-2, -1)))


@pytest.mark.filterwarnings("ignore:2 steps of batch 16 end at 4x4")
def test_an_older_pggan_checkpoint_fails_with_its_version(tmp_path):
    from ganlib import checkpoints
    from ganlib.files import atomic_save

    t = _trainer(tmp_path / "run", steps=2)
    t.train(progress=False)
    t.save_checkpoint()
    assert t.spec["version"] == pggan.VERSION == 2
    state = checkpoints.load_checkpoint_file(tmp_path / "run")
    del state["spec"]["version"]  # written before the networks had a version: version 1
    for net in ("G", "G_ema"):  # and with the first layer of version 1: a bias per position
        bias = state[net].pop("dense_bias")
        state[net]["dense.bias"] = bias.repeat_interleave(16)
    atomic_save(state, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(GanlibError, match=r"^the saved pggan networks are version 1, this ganlib builds version 2 "):
        _trainer(tmp_path / "run", steps=2).load_checkpoint()
    with pytest.raises(GanlibError, match="version 1, this ganlib builds version 2"):
        checkpoints.load_generator(tmp_path / "run")

import pytest
import torch

from ganlib import models
from ganlib.errors import GanlibError
from ganlib.models import dcgan, mlp


def test_mlp_shapes_and_packing():
    G, D = mlp.MLPGenerator(z_dim=5), mlp.MLPDiscriminator(pack=2)
    x = G(torch.randn(6, 5))
    assert x.shape == (6, 2)
    logits = D(x)
    assert logits.shape == (3,)
    # packing: each logit sees two consecutive samples, concatenated
    pairs = x.reshape(3, 4)
    assert torch.allclose(logits, D.net(pairs).squeeze(1))
    with pytest.raises(GanlibError, match="multiple of the packing degree"):
        D(torch.randn(5, 2))
    for bad in (0, 1.5, "2"):
        with pytest.raises(GanlibError, match="packing degree"):
            mlp.MLPDiscriminator(pack=bad)


@pytest.mark.parametrize("res", [16, 32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes(res, channels):
    G = dcgan.Generator(res, channels, z_dim=8, width=8)
    D = dcgan.Discriminator(res, channels, width=8)
    x = G(torch.randn(2, 8))
    assert x.shape == (2, channels, res, res)
    assert x.abs().max() <= 1  # tanh output
    assert D(x).shape == (2,)


def test_dcgan_channel_plan_matches_the_paper_at_64():
    G = dcgan.Generator(64, 3, z_dim=100, width=64)
    convs = [m for m in G.net if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs] == [512, 256, 128, 64, 3]
    D = dcgan.Discriminator(64, 3, width=64)
    convs = [m for m in D.net if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert not isinstance(D.net[1], torch.nn.BatchNorm2d)  # no normalisation after the first layer


def test_dcgan_init():
    torch.manual_seed(0)
    G = dcgan.Generator(64, 3, z_dim=100, width=64)
    w = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)])
    assert abs(w.std().item() - 0.02) < 0.001 and abs(w.mean().item()) < 0.001
    bn = torch.cat([m.weight for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert abs(bn.mean().item() - 1) < 0.01 and 0.01 < bn.std().item() < 0.03


def test_dcgan_conditional():
    torch.manual_seed(0)
    G = dcgan.Generator(16, 1, z_dim=8, width=8, num_classes=10).eval()
    D = dcgan.Discriminator(16, 1, width=8, num_classes=10).eval()
    z = torch.randn(1, 8).repeat(2, 1)
    y = torch.tensor([3, 7])
    x = G(z, y)
    assert not torch.allclose(x[0], x[1])  # the class changes the image
    same = x[:1].repeat(2, 1, 1, 1)
    s = D(same, y)
    assert not torch.isclose(s[0], s[1])  # ... and D's verdict


@pytest.mark.parametrize("res", [8, 24, 256])
def test_dcgan_resolution_limits(res):
    with pytest.raises(GanlibError, match="power of two between 16 and 128"):
        dcgan.Generator(res, 1)


def test_dcgan_rejects_wrong_channels():
    D = dcgan.Discriminator(16, 3, width=8)
    with pytest.raises(GanlibError, match="grey image given to an RGB model"):
        D(torch.zeros(2, 1, 16, 16))


def test_build_roundtrip_and_bad_specs():
    spec = {"family": "dcgan", "G": {"resolution": 16, "img_channels": 1, "z_dim": 4, "width": 8},
            "D": {"resolution": 16, "img_channels": 1, "width": 8}}
    G, D = models.build(spec)
    assert isinstance(G, dcgan.Generator) and G.z_dim == 4
    with pytest.raises(GanlibError, match="unknown model family"):
        models.build({"family": "vae", "G": {}, "D": {}})
    with pytest.raises(GanlibError, match="does not match this version"):
        models.build({"family": "dcgan", "G": {"colour": 3}, "D": {}}, saved=True)
    with pytest.raises(GanlibError, match=r"dcgan networks do not take these arguments .*'colour'.*dcgan.Generator"):
        models.build({"family": "dcgan", "G": {"colour": 3}, "D": {}})  # a preset's typo, not an old checkpoint


def test_sample_is_deterministic_and_restores_mode():
    G = dcgan.Generator(16, 1, z_dim=8, width=8, num_classes=10)
    G.train()
    a, la = G.sample(5, seed=1)
    b, lb = G.sample(5, seed=1)
    assert torch.equal(a, b) and torch.equal(la, lb) and G.training
    assert a.shape == (5, 1, 16, 16) and la.shape == (5,)


def test_sample_draws_z_then_labels_and_refuses_a_truncation_the_family_lacks():
    G = dcgan.Generator(16, 1, z_dim=8, width=8, num_classes=10).eval()
    x, labels = G.sample(5, seed=3, batch=2)  # in batches of 2: the same as one batch
    g = torch.Generator().manual_seed(3)
    z = torch.randn(5, 8, generator=g)
    expected_labels = torch.randint(10, (5,), generator=g)
    with torch.no_grad():
        expected = G(z, expected_labels)
    assert torch.equal(labels, expected_labels)
    torch.testing.assert_close(x, expected)
    with pytest.raises(GanlibError, match="ganlib.models.dcgan.Generator has no truncation trick"):
        G.sample(5, truncation=0.5)


def tiny_generators():
    """One small generator per family, in training mode (name -> G)."""
    from ganlib.models import biggan, pggan, stylegan

    torch.manual_seed(0)
    return {"gan": mlp.MLPGenerator(z_dim=4), "dcgan": dcgan.Generator(16, 1, z_dim=8, width=8),
            "pggan": pggan.Generator(8, 1, z_dim=8, fmap_base=64, fmap_max=16),
            "stylegan": stylegan.Generator(8, 1, z_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8),
            "biggan": biggan.Generator(16, 1, num_classes=10, z_dim=12, width=8, shared_dim=8)}


@pytest.mark.parametrize("family", sorted(models.FAMILIES))
def test_every_generator_samples_the_same_way(family):
    """G.sample(n, seed): z ~ N(0, I) from the seed (then labels), G in eval mode, on the CPU, G left in training."""
    G = tiny_generators()[family].train()
    x, labels = G.sample(5, seed=2)
    again, _ = G.sample(5, seed=2)
    assert x.device.type == "cpu" and G.training and torch.equal(x, again)
    torch.testing.assert_close(G.sample(5, seed=2, batch=2)[0], x)  # in batches of 2: the same samples
    g = torch.Generator().manual_seed(2)
    z = torch.randn(5, G.z_dim, generator=g)
    assert (labels is None) == (getattr(G, "num_classes", 0) == 0)
    if labels is not None:
        assert torch.equal(labels, torch.randint(G.num_classes, (5,), generator=g))
    if family != "biggan":  # BigGAN re-measures its batch-norm statistics first (tests/test_biggan.py)
        with torch.no_grad():
            direct = G.eval()(z, labels) if labels is not None else G.eval()(z)
        if family == "stylegan":
            direct = G(z, noise_mode="const")
        torch.testing.assert_close(x, direct)
    assert (x - x[:1]).abs().amax() > 0  # different latents, different samples


def test_family_options_of_sample():
    gens = tiny_generators()
    x, _ = gens["pggan"].sample(3, seed=0, resolution=4, alpha=1.0)
    assert x.shape == (3, 1, 4, 4)
    with pytest.raises(GanlibError, match="ganlib.models.pggan.Generator has no truncation trick"):
        gens["pggan"].sample(3, truncation=0.5)
    G = gens["stylegan"]
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    psi0, _ = G.sample(3, seed=0, truncation=0.0)
    torch.testing.assert_close(psi0, psi0[:1].expand(3, -1, -1, -1))  # psi = 0: every sample the average w
    coarse, _ = G.sample(3, seed=0, truncation=0.0, truncation_cutoff=2)  # only the first two layers truncated
    assert not torch.allclose(coarse, psi0)
    x, labels = gens["biggan"].sample(4, seed=0, labels=torch.tensor([1, 2, 3, 4]), statistics="running")
    assert labels.tolist() == [1, 2, 3, 4] and x.shape == (4, 1, 16, 16)


def test_check_shape_names_the_axis_and_the_fix():
    from ganlib.errors import check_shape

    check_shape(torch.zeros(8, 64), (None, 64), "z")
    with pytest.raises(GanlibError) as e:
        check_shape(torch.zeros(8, 32), (None, 64), "z", "latents are [N, z_dim=64]")
    assert str(e.value) == "z must be [N, 64], got [8, 32]: axis 1 is 32, not 64; latents are [N, z_dim=64]."
    with pytest.raises(GanlibError, match=r"z must be \[N, 64\], got \[64\]: 1 axes, not 2; check"):
        check_shape(torch.zeros(64), (None, 64), "z")
    with pytest.raises(GanlibError, match=r"^labels \[3\] is missing: give one class per latent\.$"):
        check_shape(None, (3,), "labels", "give one class per latent")
    G = dcgan.Generator(16, 1, z_dim=8, width=8, num_classes=10)
    with pytest.raises(GanlibError, match=r"the conditional generator's labels \[2\] is missing"):
        G(torch.randn(2, 8))
    with pytest.raises(GanlibError, match=r"z must be \[N, 8\], got \[2, 7\]: axis 1 is 7, not 8"):
        G(torch.randn(2, 7), torch.zeros(2, dtype=torch.long))

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
    a, la = models.sample(G, 5, seed=1)
    b, lb = models.sample(G, 5, seed=1)
    assert torch.equal(a, b) and torch.equal(la, lb) and G.training
    assert a.shape == (5, 1, 16, 16) and la.shape == (5,)


def test_sample_draws_z_then_labels_and_refuses_a_truncation_the_family_lacks():
    G = dcgan.Generator(16, 1, z_dim=8, width=8, num_classes=10).eval()
    x, labels = models.sample(G, 5, seed=3, batch=2)  # in batches of 2: the same as one batch
    g = torch.Generator().manual_seed(3)
    z = torch.randn(5, 8, generator=g)
    expected_labels = torch.randint(10, (5,), generator=g)
    with torch.no_grad():
        expected = G(z, expected_labels)
    assert torch.equal(labels, expected_labels)
    torch.testing.assert_close(x, expected)
    with pytest.raises(GanlibError, match="ganlib.models.dcgan.Generator has no truncation trick"):
        models.sample(G, 5, truncation=0.5)

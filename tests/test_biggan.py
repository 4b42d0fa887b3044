"""BigGAN: conditional batch norm, self-attention, orthogonal regularisation, spectral norm, the networks,
the truncated normal, the recipe and its command line."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gancourse import recipes
from gancourse.__main__ import main
from ganlib import layers, losses, spectral
from ganlib.errors import GanlibError
from ganlib.models import biggan


def assert_agrees(out, ref, tol=1e-5):
    """out (ganlib, fp32) equals ref (a direct statement, fp64) to `tol` relative to ref's largest entry."""
    assert out.shape == ref.shape, (out.shape, ref.shape)
    err, scale = (out.double() - ref.double()).abs().max().item(), ref.abs().max().item()
    assert err <= tol * scale, f"max difference {err:.2e} against a largest entry of {scale:.2e}"


def normal_cdf(x):
    return 0.5 * (1 + torch.erf(torch.as_tensor(x, dtype=torch.float64) / math.sqrt(2)))


# ----------------------------------------------------------------------------------------------------------
# layers


def test_conditional_batch_norm_matches_the_formula():
    torch.manual_seed(0)
    cbn = layers.ConditionalBatchNorm2d(5, cond_dim=7)
    x, c = 3 * torch.randn(8, 5, 4, 4) + 2, torch.randn(8, 7)
    out = cbn(x, c)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    normalised = (x - mean) / torch.sqrt(var + 1e-5)
    gain = 1 + c @ cbn.gain.weight.T  # [N, C]
    bias = c @ cbn.bias.weight.T
    torch.testing.assert_close(out, normalised * gain[:, :, None, None] + bias[:, :, None, None])
    # a zero condition is plain batch norm (the gain is centred at 1)
    torch.testing.assert_close(cbn(x, torch.zeros(8, 7)), normalised)
    # eval mode uses the running statistics
    cbn.eval()
    running = (x - cbn.bn.running_mean[:, None, None]) / torch.sqrt(cbn.bn.running_var[:, None, None] + 1e-5)
    torch.testing.assert_close(cbn(x, torch.zeros(8, 7)), running)


def test_self_attention_is_the_identity_at_initialisation_and_attends_when_gamma_is_set():
    torch.manual_seed(0)
    attn = layers.SelfAttention(16)
    x = torch.randn(2, 16, 8, 8)
    assert attn.gamma.item() == 0
    torch.testing.assert_close(attn(x), x)
    with torch.no_grad():
        attn.gamma.fill_(1.0)
    out = attn(x)
    assert not torch.allclose(out, x)
    # direct computation of x + gamma * o(g softmax(theta^T phi)^T)
    theta = attn.theta(x).flatten(2)
    phi, g = F.max_pool2d(attn.phi(x), 2).flatten(2), F.max_pool2d(attn.g(x), 2).flatten(2)
    expected = torch.empty_like(x)
    for n in range(2):
        weights = torch.softmax(theta[n].T @ phi[n], dim=1)  # [64, 16]
        expected[n] = x[n] + attn.o((g[n] @ weights.T).reshape(1, 8, 8, 8))[0]
    torch.testing.assert_close(out, expected)
    # non-local: changing one corner changes the output at the opposite corner
    y = x.clone()
    y[:, :, 0, 0] += 5
    assert (attn(y)[:, :, -1, -1] - out[:, :, -1, -1]).abs().max() > 1e-4


def off_diagonal_penalty(w):
    w = w.flatten(1)
    gram = w @ w.T
    return sum((gram[i, j] ** 2).item() for i in range(len(gram)) for j in range(len(gram)) if i != j)


def test_orthogonal_regularization_matches_a_direct_computation_and_skips_biases_norms_embeddings():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Embedding(4, 6), nn.Linear(6, 5), nn.BatchNorm2d(5), nn.Conv2d(5, 3, 3))
    expected = 1e-4 * (off_diagonal_penalty(net[1].weight) + off_diagonal_penalty(net[3].weight))
    out = losses.orthogonal_regularization(net)
    assert out.ndim == 0 and out.item() == pytest.approx(expected, rel=1e-5)
    assert losses.orthogonal_regularization(net, beta=1.0).item() == pytest.approx(expected * 1e4, rel=1e-5)
    # orthogonal rows with any norms are not penalised (only the off-diagonal terms count)
    q = torch.linalg.qr(torch.randn(6, 6))[0][:4] * torch.tensor([[1.0], [2.0], [3.0], [0.5]])
    lin = nn.Linear(6, 4)
    with torch.no_grad():
        lin.weight.copy_(q)
    assert losses.orthogonal_regularization(lin, beta=1.0).item() < 1e-9
    # a spectrally normalised weight is penalised in its stored form
    sn = nn.utils.parametrizations.spectral_norm(nn.Linear(6, 5))
    assert losses.orthogonal_regularization(sn, beta=1.0).item() == pytest.approx(
        off_diagonal_penalty(sn.parametrizations.weight.original), rel=1e-5)


def test_orthogonal_regularization_gradient_is_four_beta_times_offdiag_gram_times_w():
    torch.manual_seed(0)
    lin = nn.Linear(7, 4, bias=False)
    losses.orthogonal_regularization(lin, beta=1e-2).backward()
    w = lin.weight.detach()
    gram = w @ w.T
    expected = 4 * 1e-2 * (gram * (1 - torch.eye(4))) @ w  # BigGAN-PyTorch adds half of this (beta / 2)
    torch.testing.assert_close(lin.weight.grad, expected)


# ----------------------------------------------------------------------------------------------------------
# truncated normal


@pytest.mark.parametrize("threshold", [0.25, 1.0, 2.0])
def test_truncated_z_stays_inside_without_piling_up_and_has_the_truncated_normal_law(threshold):
    z = biggan.truncated_z(20000, 4, threshold, generator=torch.Generator().manual_seed(0))
    assert z.shape == (20000, 4)
    assert z.abs().max() <= threshold
    edge = (z.abs() > 0.99 * threshold).double().mean().item()
    a = torch.tensor(threshold, dtype=torch.float64)
    expected_edge = (2 * (normal_cdf(a) - normal_cdf(0.99 * a)) / (2 * normal_cdf(a) - 1)).item()
    assert edge < 2 * expected_edge + 1e-3  # clipping would put P(|z| > threshold) of the mass here
    # the variance of the normal truncated to [-a, a]: 1 - 2 a phi(a) / (2 Phi(a) - 1)
    phi = math.exp(-threshold ** 2 / 2) / math.sqrt(2 * math.pi)
    var = 1 - 2 * threshold * phi / (2 * normal_cdf(a).item() - 1)
    assert z.var().item() == pytest.approx(var, rel=0.03)
    # Kolmogorov-Smirnov distance to the truncated normal's CDF
    s = z.flatten().double().sort().values
    cdf = (normal_cdf(s) - normal_cdf(-a)) / (2 * normal_cdf(a) - 1)
    ks = (cdf - torch.arange(1, len(s) + 1, dtype=torch.float64) / len(s)).abs().max().item()
    assert ks < 0.015


def test_truncated_z_is_reproducible_and_rejects_bad_thresholds():
    a = biggan.truncated_z(5, 3, 0.5, generator=torch.Generator().manual_seed(1))
    b = biggan.truncated_z(5, 3, 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    for bad in (0, -1.0):
        with pytest.raises(GanlibError, match="positive"):
            biggan.truncated_z(5, 3, bad)


# ----------------------------------------------------------------------------------------------------------
# networks


@pytest.mark.parametrize("res,channels", [(16, 1), (32, 3)])
def test_shapes_and_the_hierarchical_latent(res, channels):
    torch.manual_seed(0)
    blocks = int(math.log2(res)) - 2
    G = biggan.Generator(res, channels, num_classes=10, z_dim=4 * (blocks + 1), width=8, shared_dim=8,
                         attention=(8,))
    D = biggan.Discriminator(res, channels, num_classes=10, width=8, attention=(8,))
    z, y = torch.randn(3, G.z_dim), torch.tensor([0, 5, 9])
    x = G(z, y)
    assert x.shape == (3, channels, res, res) and x.abs().max() <= 1
    assert D(x, y).shape == (3,)
    assert len(G.blocks) == blocks and G.chunk == 4
    assert [b.bn1.gain.in_features for b in G.blocks] == [8 + 4] * blocks  # shared embedding + one z chunk
    assert list(G.attn) == ["8"] and list(D.attn) == ["8"]
    # each block's z chunk reaches the image: changing only the last chunk changes it
    G.eval()
    z2 = z.clone()
    z2[:, -4:] += 1
    assert not torch.allclose(G(z, y), G(z2, y))


def test_biggan_at_128_has_the_papers_channels_and_chunks():
    G = biggan.Generator(128, 3, num_classes=1000, z_dim=120, width=96, shared_dim=128, attention=(64,))
    assert G.chunk == 20 and G.blocks[0].bn1.gain.in_features == 148  # 120 = 6 x 20; CBN input 128 + 20
    assert [b.conv1.out_channels for b in G.blocks] == [16 * 96, 8 * 96, 4 * 96, 2 * 96, 96]
    assert G.linear.out_features == 16 * 96 * 4 * 4
    D = biggan.Discriminator(128, 3, num_classes=1000, width=96, attention=(64,))
    assert [b.conv1.out_channels for b in D.blocks] == [96, 2 * 96, 4 * 96, 8 * 96, 16 * 96, 16 * 96]
    assert [b.downsample for b in D.blocks] == [True] * 5 + [False]
    assert not D.blocks[0].preactivation and all(b.preactivation for b in D.blocks[1:])
    assert list(D.attn) == ["64"]


def test_z_dim_must_split_into_chunks():
    with pytest.raises(GanlibError, match="equal chunks"):
        biggan.Generator(16, 1, z_dim=10)


def test_projection_discriminator_is_linear_plus_inner_product_with_the_class_embedding():
    torch.manual_seed(0)
    D = biggan.Discriminator(16, 1, num_classes=3, width=8, spectral_norm=False)
    x = torch.randn(4, 1, 16, 16)
    h = x
    for block in D.blocks:
        h = block(h)
    h = F.relu(h).sum(dim=(2, 3))  # sum pooling
    for label in range(3):
        y = torch.full((4,), label)
        expected = h @ D.linear.weight[0] + D.linear.bias + h @ D.embed.weight[label]
        torch.testing.assert_close(D(x, y), expected)


def test_spectral_norm_everywhere_except_the_shared_embedding():
    G = biggan.Generator(16, 1, num_classes=10, z_dim=12, width=8, shared_dim=8, attention=(8,))
    D = biggan.Discriminator(16, 1, num_classes=10, width=8, attention=(8,))
    parametrized = lambda m: nn.utils.parametrize.is_parametrized(m, "weight")
    for net in (G, D):
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                assert parametrized(m), m
    assert parametrized(D.embed) and not parametrized(G.shared)
    plain = biggan.Generator(16, 1, num_classes=10, z_dim=12, width=8, shared_dim=8, spectral_norm=False)
    assert not any(parametrized(m) for m in plain.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


@pytest.mark.parametrize("module", [nn.Linear(7, 5), nn.Conv2d(3, 4, 3), nn.Embedding(6, 3)], ids=type)
def test_spectral_norm_follows_miyatos_algorithm_from_a_fixed_u(module):
    """Miyato et al. (2018), Algorithm 1, as BigGAN-PyTorch runs it: at each training forward v = W^T u / |W^T u|,
    u = W v / |W v|, sigma = u^T W v, and the layer uses W / sigma. The sigmas over the first forwards from a fixed
    u, with W changing between them as in training; in eval mode the same step is taken and u kept; the gradient
    treats u and v as constants: d<R, W / sigma>/dW = R / sigma - <R, W> / sigma^2 u v^T."""
    g = torch.Generator().manual_seed(0)
    spectral.spectral_norm(module, eps=1e-6)
    original, sn = module.parametrizations.weight.original, module.parametrizations.weight[0]
    out_dim = original.shape[0]
    u = torch.randn(out_dim, generator=g, dtype=torch.float64)
    u /= u.norm()
    with torch.no_grad():
        sn._u.copy_(u)
    norm = lambda t: t / t.norm()
    for _ in range(5):
        with torch.no_grad():
            original.add_(0.3 * torch.randn(original.shape, generator=g))  # an update between forwards
        W = original.detach().double().flatten(1)  # [out, -1]
        v = norm(W.T @ u)
        u_before, u = u, norm(W @ v)
        sigma = u @ W @ v
        assert_agrees(module.weight.detach().flatten(1), W / sigma)  # one training-mode read: one step
        assert_agrees(sn._u, u)
        ours_sigma, ours_u = spectral.power_iteration(W.float(), u_before.float())  # the exercise's reference step
        assert_agrees(ours_sigma, sigma)
        assert_agrees(ours_u, u)
    module.eval()
    kept = sn._u.clone()
    v = norm(W.T @ u)
    u_eval = norm(W @ v)
    sigma = u_eval @ W @ v
    R = torch.randn(original.shape, generator=g, dtype=torch.float64)
    (ours,) = torch.autograd.grad((module.weight.double() * R).sum(), original)
    assert torch.equal(sn._u, kept)  # eval mode: the step's u is not kept
    expected = R.flatten(1) / sigma - (R.flatten(1) * W).sum() / sigma**2 * torch.outer(u_eval, v)
    assert_agrees(ours.flatten(1), expected)


def test_a_state_dict_of_torchs_spectral_norm_loads():
    torch.manual_seed(0)
    theirs = nn.utils.parametrizations.spectral_norm(nn.Conv2d(3, 4, 3))
    ours = spectral.spectral_norm(nn.Conv2d(3, 4, 3))
    ours.load_state_dict(theirs.state_dict())
    assert torch.equal(ours.parametrizations.weight[0]._u, theirs.parametrizations.weight[0]._u)
    assert torch.equal(ours.parametrizations.weight.original, theirs.parametrizations.weight.original)
    assert set(ours.state_dict()) == set(theirs.state_dict()) - {"parametrizations.weight.0._v"}


def test_generator_conditions_every_block_on_the_shared_embedding_and_its_own_z_chunk():
    """BigGAN's hierarchical latent: the first chunk of z feeds the linear layer, chunk i + 1 joins the shared class
    embedding as the condition of both conditional batch norms of block i."""
    torch.manual_seed(0)
    G = biggan.Generator(32, 1, num_classes=10, z_dim=16, width=8, shared_dim=8)
    seen = {}
    for i, block in enumerate(G.blocks):
        for name in ("bn1", "bn2"):
            hook = lambda m, args, key=(i, name): seen.__setitem__(key, args[1])  # args: (x, condition)
            getattr(block, name).register_forward_pre_hook(hook)
    G.linear.register_forward_pre_hook(lambda m, args: seen.__setitem__("linear", args[0]))
    z, y = torch.randn(3, 16), torch.tensor([2, 7, 2])
    G(z, y)
    assert torch.equal(seen["linear"], z[:, :4])
    embedding = G.shared.weight[y]  # one embedding for every block, not spectrally normalised
    for i in range(len(G.blocks)):
        for name in ("bn1", "bn2"):
            assert torch.equal(seen[i, name], torch.cat([embedding, z[:, 4 * (i + 1): 4 * (i + 2)]], dim=1))


def test_after_20_training_forward_passes_every_largest_singular_value_is_within_5_percent_of_1():
    torch.manual_seed(0)
    G = biggan.Generator(16, 1, num_classes=10, z_dim=12, width=8, shared_dim=8, attention=(8,))
    D = biggan.Discriminator(16, 1, num_classes=10, width=8, attention=(8,))
    normalised = [m for net in (G, D) for m in net.modules() if nn.utils.parametrize.is_parametrized(m, "weight")]
    sigma = lambda m: torch.linalg.matrix_norm(m.weight.detach().flatten(1), 2).item()  # of the weight in use
    with torch.no_grad():  # an update like a gradient step's (a sum of outer products): a rank-one kick of norm 2
        for m in normalised:
            w = m.parametrizations.weight.original
            a, b = torch.randn(w.shape[0]), torch.randn(w[0].numel())
            w += 2 * (torch.outer(a / a.norm(), b / b.norm())).reshape(w.shape)
    z, y = torch.randn(4, 12), torch.randint(10, (4,))

    def passes(n):
        with torch.no_grad():
            for _ in range(n):
                D(G(z, y), y)

    G.eval(), D.eval()
    us = [m.parametrizations.weight[0]._u.clone() for m in normalised]
    passes(20)  # eval mode: the power iteration does not advance (each pass takes the same step from the same u)
    assert all(torch.equal(m.parametrizations.weight[0]._u, u) for m, u in zip(normalised, us))
    G.train(), D.train()
    passes(20)
    sigmas = [sigma(m) for m in normalised]
    assert len(sigmas) > 30 and all(abs(s - 1) < 0.05 for s in sigmas), sigmas


def test_orthogonal_initialisation():
    G = biggan.Generator(16, 1, num_classes=10, z_dim=12, width=8, shared_dim=8, spectral_norm=False)
    w = G.blocks[0].conv2.weight.flatten(1)  # [16, 144]: rows orthonormal
    torch.testing.assert_close(w @ w.T, torch.eye(16), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------------------
# recipe, training, sampling


def test_recipe_trains_with_ortho_and_ema_and_resumes_exactly(tmp_path):
    def run(steps, resume_at=None):
        torch.manual_seed(0)
        t = recipes.make_trainer("biggan", profile="smoke", device="cpu", run_dir=tmp_path / "run", steps=steps)
        if resume_at:
            t.load_checkpoint()
        t.train(progress=False)
        return t

    torch.manual_seed(0)
    full = recipes.make_trainer("biggan", profile="smoke", device="cpu", steps=6)
    full.train(progress=False)
    assert full.cfg.loss == "hinge" and full.cfg.ortho_beta == 1e-4 and "ortho" in full.history[-1]
    assert full.G.num_classes == 10 and isinstance(full.G, biggan.Generator)
    run(3)
    resumed = run(6, resume_at=3)
    for a, b in zip(full.G.state_dict().values(), resumed.G.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_sample_command_writes_labels_and_truncates(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "biggan", "--data", "digits", "--profile", "smoke", "--steps", "2", "--out", str(run)]) == 0
    out = tmp_path / "s.npz"
    assert main(["sample", str(run), "--num", "12", "--class", "3", "--truncation", "0.5", "--out", str(out)]) == 0
    with np.load(out) as f:
        assert f["images"].shape == (12, 16, 16, 1) and f["labels"].tolist() == [3] * 12
    G, _, _ = recipes.load_generator(run, device="cpu")
    x1, y1 = G.sample(12, seed=0, labels=torch.full((12,), 3), truncation=0.5)
    z = biggan.truncated_z(12, G.z_dim, 0.5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x2 = G(z, torch.full((12,), 3))
    torch.testing.assert_close(x1, x2)
    with np.load(out) as f:
        assert np.abs(f["images"].astype(int) - ((x2.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255)
                      .numpy().astype(int)).max() <= 1
    x3, y3 = G.sample(12, seed=0)
    assert y3 is not None and y3.min() >= 0 and y3.max() < 10 and len(set(y3.tolist())) > 1
    assert main(["sample", str(run), "--num", "2", "--truncation", "-1", "--out", str(out)]) == 2


def test_unlabelled_data_is_refused_with_a_clear_message(tmp_path):
    from PIL import Image

    with pytest.raises(GanlibError, match="biggan needs images, and ring8 holds 2-D points"):
        recipes.make_trainer("biggan", profile="smoke", device="cpu", data="ring8")
    for i in range(2):
        Image.new("L", (16, 16), 100 * i).save(tmp_path / f"{i}.png")
    with pytest.raises(GanlibError, match="BigGAN is class-conditional and folder:.* has no labels"):
        recipes.make_trainer("biggan", profile="smoke", device="cpu", data=f"folder:{tmp_path}")


def test_trains_on_shapes_rgb_three_classes():
    torch.manual_seed(0)
    t = recipes.make_trainer("biggan", profile="smoke", device="cpu", data="shapes", steps=2)
    t.train(progress=False)
    assert t.G.img_channels == 3 and t.G.num_classes == 3 and t.D.num_classes == 3
    x, y = t.sample(6, labels=torch.tensor([0, 1, 2, 0, 1, 2]), truncation=1.0)
    assert x.shape == (6, 3, 16, 16) and y.tolist() == [0, 1, 2, 0, 1, 2]
    # the trainer samples G_ema through the model's own sampling: standing statistics, then the truncated normal
    direct, _ = t.G_ema.sample(6, labels=torch.tensor([0, 1, 2, 0, 1, 2]), truncation=1.0)
    torch.testing.assert_close(x, direct)
    z = biggan.truncated_z(6, t.G.z_dim, 1.0, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(x, t.G_ema(z, torch.tensor([0, 1, 2, 0, 1, 2])))


def test_sampling_statistics():
    """Standing and running statistics give each image independently of its batch-mates, batch statistics do
    not; "running" is G's own eval-mode forward, "standing" re-measures first; only "standing" changes G."""
    from ganlib.models.biggan import SAMPLING_STATISTICS, standing_statistics

    torch.manual_seed(0)
    G = biggan.Generator(16, 1, num_classes=10, z_dim=12, width=8, shared_dim=8)
    G.train()
    G(torch.randn(32, 12), torch.arange(32) % 10)  # running statistics that differ from standing ones
    before = copy.deepcopy(G.state_dict())
    labels = torch.arange(20) % 10
    mates = torch.cat([labels[:10], torch.zeros(10, dtype=torch.long)])  # the last 10 images change class
    for how in SAMPLING_STATISTICS:
        for psi in (None, 0.5):
            x = copy.deepcopy(G).sample(20, 0, psi, labels=labels, statistics=how)[0]
            x_mates = copy.deepcopy(G).sample(20, 0, psi, labels=mates, statistics=how)[0]  # the same latents
            assert torch.allclose(x[:10], x_mates[:10], atol=1e-5) == (how != "batch"), (how, psi)
    z = torch.randn(20, 12, generator=torch.Generator().manual_seed(0))  # G.sample's draw for seed 0
    for how in ("running", "batch"):
        x = G.sample(20, 0, labels=labels, statistics=how)[0]
        assert all(torch.equal(before[k], v) for k, v in G.state_dict().items()), how  # G left as it was
        if how == "running":
            running = G.eval()(z, labels)
            assert torch.allclose(x, running, atol=1e-6)
    with torch.no_grad():
        standing = standing_statistics(copy.deepcopy(G), seed=1)(z, labels)
    assert torch.allclose(G.sample(20, 0, labels=labels)[0], standing, atol=1e-6)  # "standing", the default
    assert not torch.allclose(standing, running, atol=1e-3)  # the two statistics differ here
    with pytest.raises(GanlibError, match="statistics 'moving'"):
        G.sample(4, statistics="moving")

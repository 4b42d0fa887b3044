"""Chapter 01b's checks: the reference passes, and each typical mistake gets its own message."""

import torch
import torch.nn.functional as F
from check_helpers import lenient, message  # noqa: F401  (an autouse fixture: failures are results here)

from gancourse import checks
from ganlib import layers, losses


def _gp(u="sample", at="between", squared=False, batch_norm=False, mean=False, graph=True, one_sided=False):
    """A student's gradient penalty, written independently of the check's variants."""

    def fn(critic, real, fake, generator):
        n = real.shape[0]
        if u == "sample":
            t = torch.rand(n, *[1] * (real.ndim - 1), generator=generator)
        elif u == "batch":
            t = torch.rand(1, generator=generator)
        else:
            t = torch.rand(real.shape, generator=generator)
        x = {"between": real + t * (fake - real), "real": real, "fake": fake}[at].detach().requires_grad_(True)
        scores = critic(x)
        grad = torch.autograd.grad(scores.mean() if mean else scores.sum(), x, create_graph=graph)[0]
        norms = grad.norm() * torch.ones(n) if batch_norm else grad.reshape(n, -1).norm(dim=1)
        if squared:
            return (norms**2).mean()
        if one_sided:
            return torch.clamp(norms - 1, min=0).pow(2).mean()
        return ((norms - 1) ** 2).mean()

    return fn


def test_gradient_penalty_reference_and_mistakes():
    assert checks.check_gradient_penalty(lambda c, r, f, g: losses.gradient_penalty(c, r, f, g)).passed
    assert checks.check_gradient_penalty(_gp()).passed  # written another way
    for fn, words in [
        (_gp(squared=True), "that is R1"),
        (_gp(batch_norm=True), "whole batch"),
        (_gp(mean=True), "divides every sample's gradient by N"),
        (_gp(at="real"), "evaluated at the real samples"),
        (_gp(at="fake"), "evaluated at the fake samples"),
        (_gp(u="batch"), "one u is shared by the whole batch"),
        (_gp(u="element"), "drawn for every coordinate"),
        (_gp(one_sided=True), "one-sided"),
        (_gp(graph=False), "create_graph=True"),
    ]:
        assert words in message(checks.check_gradient_penalty(fn)), words


def test_gradient_penalty_needs_its_gradient_to_reach_the_critic():
    def detached(critic, real, fake, generator):  # right value, but cut from the critic's weights
        return losses.gradient_penalty(critic, real, fake, generator).detach().requires_grad_(True)

    assert "gradient with respect to the critic's weights" in message(checks.check_gradient_penalty(detached))


def test_critic_loss_reference_and_mistakes():
    def loss(sign=1.0, weight=None, logistic=False, penalty=True):
        def fn(critic, real, fake, generator, gp_weight=10.0):
            real_s, fake_s = critic(real), critic(fake)
            base = losses.d_loss_logistic(real_s, fake_s) if logistic else sign * (fake_s.mean() - real_s.mean())
            if not penalty:
                return base
            return base + (gp_weight if weight is None else weight) * losses.gradient_penalty(critic, real, fake,
                                                                                               generator)
        return fn

    assert checks.check_critic_loss(loss()).passed
    for fn, words in [(loss(sign=-1.0), "wrong sign"), (loss(penalty=False), "penalty is missing"),
                      (loss(weight=1.0), "not weighted"), (loss(weight=10.0), "gp_weight is ignored"),
                      (loss(logistic=True), "logistic")]:
        assert words in message(checks.check_critic_loss(fn)), words


def test_conditional_input_reference_and_mistakes():
    assert checks.check_conditional_input(layers.one_hot_concat).passed
    cases = [
        (lambda z, y, k: torch.cat([z, y[:, None].float()], 1), "as one number"),
        (lambda z, y, k: torch.cat([z, F.one_hot(y).float()], 1), "pass num_classes"),
        (lambda z, y, k: torch.cat([z, F.one_hot(y, k).float()], 0), "raised RuntimeError: Sizes"),
        (lambda z, y, k: torch.cat([F.one_hot(y, k).float(), z], 1), "comes first"),
        (lambda z, y, k: torch.cat([z.long(), F.one_hot(y, k)], 1), "integer tensor"),
    ]
    for fn, words in cases:
        assert words in message(checks.check_conditional_input(fn)), words


def test_projection_logits_reference_and_mistakes():
    assert checks.check_projection_logits(layers.projection_logits).passed
    assert checks.check_projection_logits(
        lambda h, y, e, lin: (h @ lin.weight.T + lin.bias).squeeze(1) + torch.einsum("nf,nf->n", e(y), h)).passed
    cases = [
        (lambda h, y, e, lin: (e(y) * h).sum(1), "unconditional score is missing"),
        (lambda h, y, e, lin: lin(h).squeeze(1), "label is not used"),
        (lambda h, y, e, lin: lin(h).squeeze(1) + e(y) @ h.T, "N x N matrix"),
        (lambda h, y, e, lin: lin(h) + (e(y) * h).sum(1, keepdim=True), "[N, 1]"),
        (lambda h, y, e, lin: lin(h).squeeze(1) - (e(y) * h).sum(1), "wrong sign"),
        (lambda h, y, e, lin: lin(h).squeeze(1) + e(y).sum(1) * h.sum(1), "summed separately"),
        (lambda h, y, e, lin: lin(h).squeeze(1) + (e(y).detach() * h).sum(1), "no gradient reaches"),
    ]
    for fn, words in cases:
        assert words in message(checks.check_projection_logits(fn)), words


def test_conditional_mlps_read_their_labels():
    """The library's conditional toy networks: G's output and both discriminators' logits depend on the label,
    and the projection D computes linear(h) + <embed(y), h> on its trunk's features."""
    from ganlib.models import mlp

    torch.manual_seed(0)
    G = mlp.MLPGenerator(z_dim=4, hidden=16, num_classes=8)
    z = torch.randn(5, 4)
    assert not torch.allclose(G(z, torch.zeros(5, dtype=torch.long)), G(z, torch.ones(5, dtype=torch.long)))
    x = torch.randn(5, 2)
    for conditioning in ("concat", "projection"):
        D = mlp.MLPDiscriminator(hidden=16, num_classes=8, conditioning=conditioning)
        a, b = D(x, torch.zeros(5, dtype=torch.long)), D(x, torch.full((5,), 3))
        assert a.shape == (5,) and not torch.allclose(a, b), conditioning
    h = D.net(x)
    labels = torch.tensor([0, 1, 2, 3, 4])
    direct = D.linear(h).squeeze(1) + (D.embed.weight[labels] * h).sum(1)
    torch.testing.assert_close(D(x, labels), direct)

import math

import torch

from ganlib import losses


def sig(v):
    return 1 / (1 + math.exp(-v))


REAL = torch.tensor([2.0, -1.0, 0.5])
FAKE = torch.tensor([-3.0, 0.2, 1.5])


def test_logistic_losses_match_hand_computation():
    d = -sum(math.log(sig(r)) for r in REAL.tolist()) / 3 - sum(math.log(1 - sig(f)) for f in FAKE.tolist()) / 3
    assert math.isclose(losses.d_loss_logistic(REAL, FAKE).item(), d, rel_tol=1e-6)
    minimax = sum(math.log(1 - sig(f)) for f in FAKE.tolist()) / 3
    assert math.isclose(losses.g_loss_minimax(FAKE).item(), minimax, rel_tol=1e-6)
    ns = -sum(math.log(sig(f)) for f in FAKE.tolist()) / 3
    assert math.isclose(losses.g_loss_nonsaturating(FAKE).item(), ns, rel_tol=1e-6)


def test_hinge_and_wasserstein_match_hand_computation():
    d = sum(max(0, 1 - r) for r in REAL.tolist()) / 3 + sum(max(0, 1 + f) for f in FAKE.tolist()) / 3
    assert math.isclose(losses.d_loss_hinge(REAL, FAKE).item(), d, rel_tol=1e-6)
    assert math.isclose(losses.g_loss_hinge(FAKE).item(), -FAKE.mean().item(), rel_tol=1e-6)
    assert math.isclose(losses.d_loss_wasserstein(REAL, FAKE).item(), (FAKE.mean() - REAL.mean()).item())
    assert math.isclose(losses.g_loss_wasserstein(FAKE).item(), -FAKE.mean().item())


def test_logistic_losses_are_stable_for_huge_logits():
    big = torch.tensor([100.0, -100.0])
    for value in (losses.d_loss_logistic(big, -big), losses.g_loss_nonsaturating(big), losses.g_loss_minimax(big)):
        assert torch.isfinite(value)
    assert math.isclose(losses.d_loss_logistic(big, -big).item(), 100.0, rel_tol=1e-6)


def test_saturating_loss_gradient_vanishes_when_D_rejects_fakes():
    # D confidently rejects the fakes: logit -10, D(G(z)) = 4.5e-5
    logits = torch.full((4,), -10.0, requires_grad=True)
    losses.g_loss_minimax(logits).backward()
    g_minimax = logits.grad.abs().mean().item()
    logits.grad = None
    losses.g_loss_nonsaturating(logits).backward()
    g_ns = logits.grad.abs().mean().item()
    # d/dl log(1 - sigmoid(l)) = -sigmoid(l);  d/dl -log sigmoid(l) = -(1 - sigmoid(l))
    assert math.isclose(g_minimax, sig(-10) / 4, rel_tol=1e-4)
    assert math.isclose(g_ns, (1 - sig(-10)) / 4, rel_tol=1e-4)
    assert g_ns / g_minimax > 10_000
    # and both push the logit the same way (up): same sign of the gradient
    logits.grad = None
    losses.g_loss_minimax(logits).backward()
    assert (logits.grad < 0).all()


def test_gradient_penalty_of_a_linear_critic():
    w = torch.tensor([3.0, 4.0])  # ||w|| = 5 everywhere, so the penalty is (5 - 1)^2 = 16
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    gp = losses.gradient_penalty(lambda x: x @ w, real, fake, torch.Generator().manual_seed(0))
    assert math.isclose(gp.item(), 16.0, rel_tol=1e-6)


def test_gradient_penalty_interpolates_per_sample_and_is_differentiable():
    # D(x) = sum(x^2): gradient 2 x_hat, so the penalty depends on where x_hat lies between real and fake
    real, fake = torch.ones(5, 3), torch.zeros(5, 3)
    g1 = torch.Generator().manual_seed(3)
    u = torch.rand(5, 1, generator=torch.Generator().manual_seed(3))
    gp = losses.gradient_penalty(lambda x: (x ** 2).sum(1), real, fake, g1)
    x_hat = real + u * (fake - real)  # lerp(real, fake, u)
    expected = ((2 * x_hat).norm(dim=1) - 1).pow(2).mean()
    assert torch.allclose(gp, expected)
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    losses.gradient_penalty(lambda x: x @ w, torch.randn(4, 2), torch.randn(4, 2)).backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    n = math.sqrt(5)
    assert torch.allclose(w.grad, 2 * (n - 1) * torch.tensor([1.0, 2.0]) / n)


def test_r1_penalty_matches_the_gradient_norm():
    x = torch.randn(6, 1, 4, 4, requires_grad=True)
    logits = (x ** 2).sum(dim=(1, 2, 3))  # gradient 2x
    r1 = losses.r1_penalty(logits, x)
    assert torch.allclose(r1, (4 * x.detach() ** 2).sum(dim=(1, 2, 3)).mean())


def test_r1_against_finite_differences():
    torch.manual_seed(0)
    D = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))
    x = torch.randn(1, 3, dtype=torch.float64)
    D = D.double()
    eps = 1e-6
    basis = torch.eye(3, dtype=torch.float64)
    grad = torch.stack([(D(x + eps * e) - D(x - eps * e)).squeeze() / (2 * eps) for e in basis])
    xr = x.clone().requires_grad_(True)
    r1 = losses.r1_penalty(D(xr).squeeze(1), xr)
    assert math.isclose(r1.item(), grad.pow(2).sum().item(), rel_tol=1e-6)


def test_drift():
    assert math.isclose(losses.drift_penalty(REAL).item(), REAL.pow(2).mean().item())

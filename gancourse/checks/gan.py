"""Checks of chapter 01 (vanilla GAN): the discriminator and generator losses, one training step."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ganlib import losses
from ganlib.models import mlp
from ganlib.train import ema_update

from .core import CheckResult, Mistake, answers, as_scalar, backward, close, diagnose, run_check, show


def _logits(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(n, generator=g) + 1, 3 * torch.randn(n, generator=g) - 1


def check_discriminator_loss(fn: Callable) -> CheckResult:
    """fn(real_logits [N], fake_logits [N]) -> E[-log D(x)] + E[-log(1 - D(G(z)))], D = sigmoid(logit)."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        for seed, n in [(0, 8), (1, 33), (2, 1)]:
            real, fake = _logits(seed, n)
            out = as_scalar(fn(real.clone(), fake.clone()), "discriminator_loss")
            ref = losses.d_loss_logistic(real, fake)
            if close(out, ref):
                continue
            mean_real, mean_fake = F.softplus(-real).mean(), F.softplus(fake).mean()
            known = [
                (-ref, "wrong sign: D *minimises* -log D(x) - log(1 - D(G(z))) (it maximises the log-likelihood "
                       "of telling real from fake), so the loss is the negative log-likelihood, which is >= 0."),
                (losses.d_loss_logistic(fake, real), "real and fake are swapped: D should say 1 (logit high) on "
                                                     "real_logits and 0 on fake_logits."),
                (ref * n, "you summed over the batch: take the mean of each term, so the loss does not grow with "
                          "the batch size."),
                (F.softplus(-real).sum() + F.softplus(fake).sum(), "you summed over the batch: take the mean."),
                (ref / 2, "you halved the loss: add the two means, -E[log D(x)] + -E[log(1 - D(G(z)))]."),
                (mean_real, "only the real term is there: add the fake term -E[log(1 - D(G(z)))]."),
                (mean_fake, "only the fake term is there: add the real term -E[log D(x)]."),
                (fake.mean() - real.mean(), "this is the Wasserstein critic loss, not the logistic one: use "
                                            "-log sigmoid(l) for reals and -log(1 - sigmoid(l)) for fakes."),
                (losses.g_loss_nonsaturating(fake), "this is the generator's loss: D's loss has a real term and "
                                                    "a fake term."),
                (F.softplus(real).mean() + F.softplus(-fake).mean(), "real and fake are swapped: D should push "
                                                                     "real logits up and fake logits down."),
            ]
            diagnose(out, known)
            raise Mistake(f"for real_logits={show(real)} and fake_logits={show(fake)} the loss should be "
                          f"{ref.item():.4f}, yours is {out.item():.4f}. Recall D = sigmoid(logit).")
        big_real, big_fake = torch.tensor([200.0, -200.0]), torch.tensor([-200.0, 200.0])
        out = as_scalar(fn(big_real.clone(), big_fake.clone()), "discriminator_loss")
        if not torch.isfinite(out) or not close(out, losses.d_loss_logistic(big_real, big_fake)):
            raise Mistake("numerically unstable: for logits of ±200, sigmoid underflows to 0 and log(0) = -inf. Use "
                          "F.softplus (-log sigmoid(l) = softplus(-l)) or F.binary_cross_entropy_with_logits.")
        real, fake = _logits(3, 5)
        real.requires_grad_(True)
        fake.requires_grad_(True)
        backward(as_scalar(fn(real, fake), "discriminator_loss"))
        ref_real, ref_fake = real.detach().clone().requires_grad_(True), fake.detach().clone().requires_grad_(True)
        losses.d_loss_logistic(ref_real, ref_fake).backward()
        if real.grad is None or fake.grad is None:
            raise Mistake("no gradient reaches the logits: do not call .item(), .detach() or torch.tensor(...) "
                          "inside the loss.")
        if not (close(real.grad, ref_real.grad) and close(fake.grad, ref_fake.grad)):
            raise Mistake("the value is right but the gradient is not: compute the loss with torch operations "
                          "on the logits themselves.")
        return "correct on every test input, stable for large logits, and differentiable."

    return run_check("discriminator_loss", body)


def check_generator_loss(fn: Callable) -> CheckResult:
    """fn(fake_logits [N]) -> the non-saturating generator loss E[-log D(G(z))]."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        for seed, n in [(0, 8), (1, 33), (2, 1)]:
            _, fake = _logits(seed, n)
            out = as_scalar(fn(fake.clone()), "generator_loss")
            ref = losses.g_loss_nonsaturating(fake)
            if close(out, ref):
                continue
            known = [
                (losses.g_loss_minimax(fake), "this is the saturating (minimax) loss E[log(1 - D(G(z)))]: when D "
                                              "confidently rejects the fakes its gradient vanishes. Minimise "
                                              "E[-log D(G(z))] instead (the non-saturating loss)."),
                (-ref, "wrong sign: G wants D(G(z)) near 1, so it minimises -log D(G(z))."),
                (ref * n, "you summed over the batch: take the mean."),
                (-fake.mean(), "this is the Wasserstein/hinge generator loss -E[l]; the logistic non-saturating "
                               "loss is E[-log sigmoid(l)] = E[softplus(-l)]."),
                (F.softplus(fake).mean(), "this is D's fake term -log(1 - D(G(z))); G's non-saturating loss is "
                                          "-log D(G(z)) = softplus(-logit)."),
            ]
            diagnose(out, known)
            raise Mistake(f"for fake_logits={show(fake)} the loss should be {ref.item():.4f}, yours is "
                          f"{out.item():.4f}. Recall D = sigmoid(logit).")
        big = torch.tensor([-200.0, 200.0])
        out = as_scalar(fn(big.clone()), "generator_loss")
        if not torch.isfinite(out) or not close(out, losses.g_loss_nonsaturating(big)):
            raise Mistake("numerically unstable: for a logit of -200, sigmoid underflows to 0 and log(0) = -inf. "
                          "Use F.softplus(-logits) or F.binary_cross_entropy_with_logits.")
        fake = _logits(4, 6)[1].requires_grad_(True)
        backward(as_scalar(fn(fake), "generator_loss"))
        ref = fake.detach().clone().requires_grad_(True)
        losses.g_loss_nonsaturating(ref).backward()
        if fake.grad is None or not close(fake.grad, ref.grad):
            raise Mistake("the value is right but no (or a wrong) gradient reaches the logits: use torch "
                          "operations only, no .item() or .detach().")
        return "correct, stable for large logits, and differentiable."

    return run_check("generator_loss", body)


class _CountingGenerator(nn.Module):
    """A tiny generator that counts how many backward passes reach its output."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(3, 2)
        self.z_dim = 3
        self.backward_passes = 0

    def forward(self, z):
        out = self.net(z)
        if out.requires_grad:
            out.register_hook(self._count)
        return out

    def _count(self, grad):
        self.backward_passes += 1


def _tiny_pair(seed: int) -> tuple[_CountingGenerator, nn.Module]:
    torch.manual_seed(seed)
    G = _CountingGenerator()
    D = nn.Sequential(nn.Linear(2, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1), nn.Flatten(0))
    return G, D


def _reference_step(G, D, opt_g, opt_d, real, z, detach=True, zero_d=True, zero_g=True, d_first=True,
                    g_loss=losses.g_loss_nonsaturating):
    """The correct training step, and (with flags) its typical wrong variants."""

    def d_part(fake):
        if zero_d:
            opt_d.zero_grad()
        loss_d = losses.d_loss_logistic(D(real), D(fake.detach() if detach else fake))
        loss_d.backward()
        opt_d.step()
        return loss_d

    def g_part(fake):
        if zero_g:
            opt_g.zero_grad()
        loss_g = g_loss(D(fake))
        loss_g.backward()
        opt_g.step()
        return loss_g

    fake = G(z)
    if d_first:
        loss_d = d_part(fake)
        loss_g = g_part(fake)
    else:
        loss_g = g_part(fake)
        loss_d = d_part(fake)
    return loss_d.item(), loss_g.item()


def _step_setup(seed: int, fn_or_variant, **variant):
    G, D = _tiny_pair(seed)
    opt_g = torch.optim.SGD(G.parameters(), lr=0.1)
    opt_d = torch.optim.SGD(D.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(seed + 100)
    real, z = torch.randn(16, 2, generator=g) + 2, torch.randn(16, 3, generator=g)
    for p in [*G.parameters(), *D.parameters()]:  # stale gradients, as after an earlier step
        p.grad = torch.randn(p.shape, generator=g)
    try:
        out = fn_or_variant(G, D, opt_g, opt_d, real.clone(), z.clone(), **variant)
    except RuntimeError as e:
        if "backward through the graph a second time" in str(e):
            raise Mistake("the D step's backward pass went through G and freed G's graph, so G's own backward "
                          "failed: use fake.detach() in D's loss (retain_graph=True would hide the bug, not fix "
                          "it: D's step does not need gradients for G).") from None
        raise
    return G, D, out


def _same_params(a: nn.Module, b: nn.Module) -> bool:
    return all(close(p, q) for p, q in zip(a.parameters(), b.parameters()))


def check_train_step(fn: Callable) -> CheckResult:
    """fn(G, D, opt_g, opt_d, real, z) -> (loss_d, loss_g): one D update, then one G update (see the
    exercise's docstring), using ganlib.losses.d_loss_logistic and g_loss_nonsaturating."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        for seed in (0, 1):
            G, D, out = _step_setup(seed, fn)
            G_ref, D_ref, (ref_d, ref_g) = _step_setup(seed, _reference_step)
            if not (isinstance(out, tuple) and len(out) == 2):
                raise Mistake(f"train_step should return a pair (loss_d, loss_g), got {type(out).__name__}.")
            loss_d, loss_g = (float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for v in out)
            d_ok, g_ok = _same_params(D, D_ref), _same_params(G, G_ref)
            if G.backward_passes > 1:
                raise Mistake("the discriminator's backward pass also ran through G: use fake.detach() in D's "
                              "loss. Without it you pay for a backward pass through G in every D step and, unless "
                              "you zero G's gradients before its own step, G's update also gets D's gradient.")
            if G.backward_passes == 0:
                raise Mistake("no gradient reached G: its loss must be computed from D(G(z)) without .detach(), "
                              "and followed by loss_g.backward() and opt_g.step().")
            if d_ok and g_ok:
                if not (close(loss_d, ref_d, atol=1e-4) and close(loss_g, ref_g, atol=1e-4)):
                    raise Mistake(f"the weights are updated correctly, but the returned losses ({loss_d:.4f}, "
                                  f"{loss_g:.4f}) should be ({ref_d:.4f}, {ref_g:.4f}): return loss_d and loss_g "
                                  f"as computed before their updates.")
                continue
            variants = [
                (dict(zero_d=False), "D's update includes stale gradients: call opt_d.zero_grad() before "
                                     "loss_d.backward()."),
                (dict(zero_g=False), "G's update includes stale gradients: call opt_g.zero_grad() right before "
                                     "loss_g.backward() (after the D step)."),
                (dict(d_first=False), "update D first, then compute G's loss with the *updated* D."),
                (dict(g_loss=losses.g_loss_minimax), "G uses the saturating loss log(1 - D(G(z))): use the "
                                                     "non-saturating losses.g_loss_nonsaturating."),
            ]
            stepped = [(_step_setup(seed, _reference_step, **variant)[:2], message) for variant, message in variants]
            diagnose((G, D), stepped, lambda nets, wrong: all(map(_same_params, nets, wrong)))
            if not d_ok:
                raise Mistake("D's weights after the step are not what one D update on losses.d_loss_logistic("
                              "D(real), D(G(z).detach())) gives: check the loss and call opt_d.step() once.")
            raise Mistake("D is updated correctly but G is not: compute losses.g_loss_nonsaturating(D(fake)) "
                          "with the updated D, zero G's gradients, backward, and call opt_g.step() once.")
        return "one correct D update, then one correct G update, on two random set-ups."

    return run_check("train_step", body)


def check_pack_samples(fn: Callable) -> CheckResult:
    """fn(x [N, D], m) -> [N/m, m*D]: PacGAN's packing, row j holding samples j*m ... j*m + m - 1 side by side."""
    fn = answers(fn)  # every result a plain value before the check reads it

    def body():
        g = torch.Generator().manual_seed(0)
        for n, d, m in [(6, 2, 2), (12, 3, 4), (5, 2, 1)]:
            x = torch.randn(n, d, generator=g)
            out = fn(x.clone(), m)
            if not isinstance(out, torch.Tensor):
                raise Mistake(f"pack_samples should return a torch tensor, got {type(out).__name__}.")
            if tuple(out.shape) == (n, m * d) and m > 1:
                raise Mistake("the result has one row per sample: each row must hold m samples, so there are "
                              "N/m rows of m*D numbers (D judges the m samples of a row together).")
            if tuple(out.shape) != (n // m, m * d):
                raise Mistake(f"for x [{n}, {d}] and m = {m} the result should be [{n // m}, {m * d}], got "
                              f"{list(out.shape)}.")
            ref = mlp.pack(x, m)
            if close(out, ref):
                continue
            known = [
                (x.reshape(m, n // m, d).transpose(0, 1).reshape(n // m, m * d),
                 "each row holds samples N/m apart (x.reshape(m, N/m, D) mixed up the axes): a row must hold m "
                 "*consecutive* samples, x.reshape(N // m, m * D)."),
                (x.reshape(n // m, m, d).transpose(1, 2).reshape(n // m, m * d),
                 "each row holds the right samples, but their coordinates are interleaved (all first coordinates, "
                 "then all second ones): keep each sample's D coordinates together, x.reshape(N // m, m * D)."),
            ]
            diagnose(out, known)
            raise Mistake("the rows differ from x.reshape(N // m, m * D): row j should be samples j*m, ..., "
                          "j*m + m - 1, one after the other.")
        return "m consecutive samples per row, for every packing degree tried."

    return run_check("pack_samples", body)


# exercise name -> check
CHECKS: dict[str, Callable[[Callable], CheckResult]] = {
    "discriminator_loss": check_discriminator_loss,
    "generator_loss": check_generator_loss,
    "train_step": check_train_step,
    "pack_samples": check_pack_samples,
}


def _ema_pair(seed: int) -> tuple[nn.Module, nn.Module]:
    """(G_ema, G): a small G with batch norm, and its EMA copy from a few updates ago (G's weights and running
    statistics have since moved), frozen as the trainer keeps it."""
    torch.manual_seed(seed)
    G = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn(p.shape))
        G(torch.randn(16, 3))  # train mode: batch norm's running statistics move
    return G_ema, G


def _tensors(module: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in (*module.parameters(), *module.buffers())]


def check_ema(fn: Callable) -> CheckResult:
    """fn(G_ema, G, beta) -> None: G_ema's parameters <- beta * ema + (1 - beta) * G's, in place; G's buffers copied;
    G not changed (reference: ganlib.train.ema_update)."""

    def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
        return all(close(x.double(), y.double()) for x, y in zip(a, b))

    def body():
        for seed, beta in [(0, 0.9), (1, 0.99)]:
            G_ema, G = _ema_pair(seed)
            ema_before, g_before = _tensors(G_ema), _tensors(G)
            ref = copy.deepcopy(G_ema)
            ema_update(ref, G, beta)
            fn(G_ema, G, beta)
            n_params = len(list(G.parameters()))
            out, want = _tensors(G_ema), _tensors(ref)
            if not same(_tensors(G), g_before):
                raise Mistake("G changed: the average is updated in G_ema's tensors, in place (p_ema.lerp_(p, "
                              "1 - beta) or p_ema.mul_(beta).add_(...)); G's own weights are what the optimiser "
                              "trains and must not move.")
            if any(p.grad_fn is not None or p.requires_grad for p in G_ema.parameters()):
                raise Mistake("G_ema's weights now have a gradient history: do the update under torch.no_grad(), "
                              "so the average is not part of the next backward pass.")
            if same(out[:n_params], ema_before[:n_params]):
                raise Mistake("G_ema's parameters did not change: write the new values into G_ema's own tensors "
                              "in place (p_ema.copy_(...), p_ema.lerp_(...)); `p_ema = ...` only rebinds a "
                              "name.")
            if not same(out[:n_params], want[:n_params]):
                swapped, copied = copy.deepcopy(G_ema), copy.deepcopy(G_ema)
                for module, weight in ((swapped, 1 - beta), (copied, 0.0)):
                    for t, b in zip(module.parameters(), ema_before[:n_params]):
                        t.copy_(b)
                    ema_update(module, G, weight)
                diagnose(out[:n_params], [
                    (_tensors(swapped)[:n_params], f"the decay is the wrong way round: with beta = {beta} the "
                                                   f"average keeps beta of its old value and takes only 1 - beta "
                                                   f"of G's, ema = beta * ema + (1 - beta) * p."),
                    (_tensors(copied)[:n_params], "G_ema is now a copy of G: the average keeps beta of its "
                                                  "old value, ema = beta * ema + (1 - beta) * p."),
                ], lambda got, wrong: same(got, wrong))
                raise Mistake(f"with beta = {beta}, G_ema's parameters should be beta * ema + (1 - beta) * p for "
                              f"each pair of G_ema's and G's parameters (in the same order), and they are not.")
            if not same(out[n_params:], want[n_params:]):
                message = ("the parameters are right, but the buffers (batch norm's running mean and variance) "
                           "are not G's: copy them, b_ema.copy_(b) for G_ema.buffers() and G.buffers(); they "
                           "are statistics, not weights, so they are not averaged")
                if same(out[n_params:], ema_before[n_params:]):
                    message += " (yours are unchanged)"
                raise Mistake(message + ".")
        return "G_ema's parameters averaged with the right decay, its buffers copied, G untouched."

    return run_check("ema", body)


CHECKS["ema"] = check_ema

"""Every check passes the reference answer, and names the typical mistakes."""

import pytest
import torch
import torch.nn.functional as F
from check_helpers import lenient, message  # noqa: F401  (lenient is an autouse fixture)

from gancourse import checks
from gancourse.checks import gan as checks_gan
from ganlib import losses


def test_reference_answers_pass():
    assert checks.check_discriminator_loss(losses.d_loss_logistic).passed
    assert checks.check_generator_loss(losses.g_loss_nonsaturating).passed
    assert checks.check_train_step(checks_gan._reference_step).passed
    bce = lambda r, f: (F.binary_cross_entropy_with_logits(r, torch.ones_like(r))
                        + F.binary_cross_entropy_with_logits(f, torch.zeros_like(f)))
    assert checks.check_discriminator_loss(bce).passed  # another correct way


def test_not_implemented():
    def todo(*args):
        raise NotImplementedError("discriminator_loss: replace this line with your code")

    for check in checks.CHECKS.values():
        assert "not implemented yet" in message(check(todo))


def test_crash_is_reported_with_the_line():
    def broken(real, fake):
        return real.mean() + fake.nosuchmethod()

    msg = message(checks.check_discriminator_loss(broken))
    assert "AttributeError" in msg and "nosuchmethod" in msg


def test_discriminator_loss_mistakes():
    ref = losses.d_loss_logistic
    cases = {
        "wrong sign": lambda r, f: -ref(r, f),
        "swapped": lambda r, f: ref(f, r),
        "summed over the batch": lambda r, f: F.softplus(-r).sum() + F.softplus(f).sum(),
        "only the real term": lambda r, f: F.softplus(-r).mean(),
        "numerically unstable": lambda r, f: -(torch.log(torch.sigmoid(r)).mean()
                                              + torch.log(1 - torch.sigmoid(f)).mean()),
        "one number": lambda r, f: F.softplus(-r) + F.softplus(f),
        "Wasserstein": lambda r, f: f.mean() - r.mean(),
        "no gradient": lambda r, f: torch.tensor(ref(r, f).item()),
    }
    for expected, fn in cases.items():
        assert expected in message(checks.check_discriminator_loss(fn)), expected


def test_generator_loss_mistakes():
    cases = {
        "saturating (minimax)": losses.g_loss_minimax,
        "wrong sign": lambda f: -losses.g_loss_nonsaturating(f),
        "numerically unstable": lambda f: -torch.log(torch.sigmoid(f)).mean(),
        "D's fake term": lambda f: F.softplus(f).mean(),
        "summed": lambda f: F.softplus(-f).sum(),
    }
    for expected, fn in cases.items():
        assert expected in message(checks.check_generator_loss(fn)), expected


def step_without_detach(G, D, opt_g, opt_d, real, z):
    fake = G(z)
    opt_d.zero_grad()
    loss_d = losses.d_loss_logistic(D(real), D(fake))  # no detach
    loss_d.backward()
    opt_d.step()
    opt_g.zero_grad()
    loss_g = losses.g_loss_nonsaturating(D(fake))
    loss_g.backward()
    opt_g.step()
    return loss_d.item(), loss_g.item()


def test_train_step_mistakes():
    assert "fake.detach()" in message(checks.check_train_step(step_without_detach))
    variants = {
        "opt_d.zero_grad()": dict(zero_d=False),
        "opt_g.zero_grad()": dict(zero_g=False),
        "update D first": dict(d_first=False),
        "saturating": dict(g_loss=losses.g_loss_minimax),
    }
    for expected, flags in variants.items():
        step = lambda *a, flags=flags: checks_gan._reference_step(*a, **flags)
        assert expected in message(checks.check_train_step(step)), expected

    def returns_nothing(*args):
        checks_gan._reference_step(*args)

    assert "should return a pair" in message(checks.check_train_step(returns_nothing))


def test_result_display():
    r = checks.CheckResult("x", True, "fine")
    assert repr(r) == "[PASSED] x: fine" and "passed" in r._repr_html_() and bool(r)


def test_strict_mode_raises(monkeypatch):
    monkeypatch.setenv("GANLIB_STRICT_CHECKS", "1")
    with pytest.raises(checks.CheckFailed, match="wrong sign"):
        checks.check_generator_loss(lambda f: -losses.g_loss_nonsaturating(f))
    assert checks.check_generator_loss(losses.g_loss_nonsaturating).passed


def test_pack_samples_reference_and_mistakes():
    from ganlib.models import mlp

    assert checks.check_pack_samples(mlp.pack).passed
    assert checks.check_pack_samples(lambda x, m: torch.cat([x[i::m] for i in range(m)], dim=1)).passed  # another way
    for fn, words in [
        (lambda x, m: torch.cat(x.chunk(m), dim=1), "samples N/m apart"),
        (lambda x, m: x.reshape(-1, m, x.shape[1]).transpose(1, 2).reshape(x.shape[0] // m, -1), "interleaved"),
        (lambda x, m: x.repeat(1, m), "one row per sample"),
        (lambda x, m: x.reshape(m, -1), "should be"),
    ]:
        assert words in message(checks.check_pack_samples(fn)), words


def test_ema_reference_and_mistakes():
    from ganlib.train import ema_update

    assert checks.check_ema(ema_update).passed

    @torch.no_grad()
    def by_hand(G_ema, G, beta):  # another correct way
        for p_ema, p in zip(G_ema.parameters(), G.parameters()):
            p_ema.mul_(beta).add_((1 - beta) * p)
        for b_ema, b in zip(G_ema.buffers(), G.buffers()):
            b_ema.copy_(b)

    assert checks.check_ema(by_hand).passed

    def params_then_buffers(update_params, copy_buffers=True, no_grad=True):
        def fn(G_ema, G, beta):
            with torch.no_grad() if no_grad else torch.enable_grad():
                for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                    update_params(p_ema, p, beta)
                if copy_buffers:
                    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                        b_ema.copy_(b)
        return fn

    cases = {
        "wrong way round": params_then_buffers(lambda e, p, beta: e.copy_((1 - beta) * e + beta * p)),
        "copy of G": params_then_buffers(lambda e, p, beta: e.copy_(p)),
        "G changed": params_then_buffers(lambda e, p, beta: p.lerp_(e, 1 - beta)),  # updates G in place
        "did not change": params_then_buffers(lambda e, p, beta: beta * e + (1 - beta) * p),  # result dropped
        "buffers": params_then_buffers(lambda e, p, beta: e.lerp_(p, 1 - beta), copy_buffers=False),
        "torch.no_grad()": params_then_buffers(lambda e, p, beta: e.copy_(beta * e + (1 - beta) * p), no_grad=False),
        "should be beta * ema": params_then_buffers(lambda e, p, beta: e.lerp_(p, 0.5)),
    }
    for expected, fn in cases.items():
        assert expected in message(checks.check_ema(fn)), expected
    assert "(yours are unchanged)" in message(checks.check_ema(cases["buffers"]))

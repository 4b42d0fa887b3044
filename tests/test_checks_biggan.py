"""Chapter 04's checks pass the reference answers and name each typical mistake."""

import torch
import torch.nn.functional as F
from check_helpers import lenient, message  # noqa: F401  (lenient is an autouse fixture)

from gancourse import checks
from ganlib import layers, losses, spectral
from ganlib.models.biggan import truncated_z


def reference_cbn(x, c, gain, bias, eps=1e-5):
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * (1 + gain(c))[:, :, None, None] + bias(c)[:, :, None, None]


def test_reference_answers_pass():
    assert checks.check_hinge_loss(losses.d_loss_hinge).passed
    assert checks.check_conditional_batch_norm(reference_cbn).passed
    assert checks.check_orthogonal_regularization(losses.orthogonal_regularization).passed
    assert checks.check_truncated_z(truncated_z).passed


def test_registered_for_the_grader():
    for name in ("hinge_loss", "conditional_batch_norm", "orthogonal_regularization", "truncated_z"):
        assert name in checks.CHECKS


def test_hinge_loss_mistakes():
    cases = {
        "relu is missing": lambda r, f: (1 - r).mean() + (1 + f).mean(),
        "Wasserstein critic": lambda r, f: f.mean() - r.mean(),
        "swapped": lambda r, f: F.relu(1 + r).mean() + F.relu(1 - f).mean(),
        "margin is missing": lambda r, f: F.relu(-r).mean() + F.relu(f).mean(),
        "summed": lambda r, f: F.relu(1 - r).sum() + F.relu(1 + f).sum(),
        "not on the mean": lambda r, f: F.relu((1 - r).mean()) + F.relu((1 + f).mean()),
        "generator's hinge": lambda r, f: -f.mean(),
        "only the real term": lambda r, f: F.relu(1 - r).mean(),
        "gradient is not": lambda r, f: torch.tensor(losses.d_loss_hinge(r, f).item(), requires_grad=True),
    }
    for expected, fn in cases.items():
        assert expected in message(checks.check_hinge_loss(fn)), expected


def test_conditional_batch_norm_mistakes():
    def normalise(x, dims, unbiased=False, eps=1e-5):
        return (x - x.mean(dims, keepdim=True)) / (x.var(dims, unbiased=unbiased, keepdim=True) + eps).sqrt()

    g = lambda gain, c: gain(c)[:, :, None, None]
    cases = {
        "no +1": lambda x, c, gain, bias, eps=1e-5: normalise(x, (0, 2, 3)) * g(gain, c) + g(bias, c),
        "swapped": lambda x, c, gain, bias, eps=1e-5: normalise(x, (0, 2, 3)) * (1 + g(bias, c)) + g(gain, c),
        "instance norm": lambda x, c, gain, bias, eps=1e-5: normalise(x, (2, 3)) * (1 + g(gain, c)) + g(bias, c),
        "layer norm": lambda x, c, gain, bias, eps=1e-5: normalise(x, (1, 2, 3)) * (1 + g(gain, c)) + g(bias, c),
        "over the batch only": lambda x, c, gain, bias, eps=1e-5: normalise(x, 0) * (1 + g(gain, c)) + g(bias, c),
        "unbiased": lambda x, c, gain, bias, eps=1e-5: normalise(x, (0, 2, 3), True) * (1 + g(gain, c)) + g(bias, c),
        "not normalised": lambda x, c, gain, bias, eps=1e-5: x * (1 + g(gain, c)) + g(bias, c),
        "shape": lambda x, c, gain, bias, eps=1e-5: reference_cbn(x, c, gain, bias).mean(1),
        "no gradient": lambda x, c, gain, bias, eps=1e-5: reference_cbn(x, c, gain, bias).detach(),
    }
    for expected, fn in cases.items():
        assert expected in message(checks.check_conditional_batch_norm(fn)), expected


def test_orthogonal_regularization_mistakes():
    def penalty(form, keep):
        def fn(module, beta):
            total = 0
            for m in module.modules():
                for p in m.parameters(recurse=False):
                    if keep(m, p):
                        total = total + form(p.flatten(1) if p.ndim >= 2 else p[:, None])
            return beta * total
        return fn

    weights = lambda m, p: p.ndim >= 2 and not isinstance(m, torch.nn.Embedding)
    off = lambda gram: gram * (1 - torch.eye(len(gram)))
    cases = {
        "original orthogonal regularisation": penalty(lambda w: (w @ w.T - torch.eye(len(w))).pow(2).sum(), weights),
        "diagonal of W W^T is included": penalty(lambda w: (w @ w.T).pow(2).sum(), weights),
        "W^T W (in x in)": penalty(lambda w: off(w.T @ w).pow(2).sum(), weights),
        "not its square": penalty(lambda w: off(w @ w.T).norm(), weights),
        "embedding is included": penalty(lambda w: off(w @ w.T).pow(2).sum(), lambda m, p: p.ndim >= 2),
        "biases": penalty(lambda w: off(w @ w.T).pow(2).sum(), lambda m, p: True),
        "beta is missing": lambda module, beta: losses.orthogonal_regularization(module, 1.0),
        "fixed beta": lambda module, beta: losses.orthogonal_regularization(module),
        "half": lambda module, beta: losses.orthogonal_regularization(module, beta / 2),
        "gradient is not": lambda module, beta: losses.orthogonal_regularization(module, beta).detach()
        + 0 * sum(p.sum() for p in module.parameters()),
    }
    for expected, fn in cases.items():
        assert expected in message(checks.check_orthogonal_regularization(fn)), expected


def test_truncated_z_mistakes():
    def resample_once(n, dim, threshold, generator):
        z = torch.randn(n, dim, generator=generator)
        outside = z.abs() > threshold
        z[outside] = torch.randn(int(outside.sum()), generator=generator)  # once is not enough
        return z

    cases = {
        "clipping": lambda n, d, t, g: torch.randn(n, d, generator=g).clamp(-t, t),
        "scaling z by the threshold": lambda n, d, t, g: t * torch.randn(n, d, generator=g),
        "uniform": lambda n, d, t, g: (2 * torch.rand(n, d, generator=g) - 1) * t,
        "until none is left": resample_once,
        "TF-Hub": lambda n, d, t, g: t / 2 * truncated_z(n, d, 2.0, g),
        "shape": lambda n, d, t, g: truncated_z(n * d, 1, t, g),
        "pass `generator`": lambda n, d, t, g: truncated_z(n, d, t),
        "different generators": lambda n, d, t, g: truncated_z(n, d, t, torch.Generator().manual_seed(0)),
        "not distributed": lambda n, d, t, g: truncated_z(n, d, t, g) * 0.5,
    }
    for expected, fn in cases.items():
        assert expected in message(checks.check_truncated_z(fn)), expected


def _power(sigma_from="new", normalise_u=True):
    def fn(w, u):
        v = w.T @ u
        v = v / v.norm()
        wv = w @ v
        u_new = wv / wv.norm() if normalise_u else wv
        sigma = {"new": (wv / wv.norm()) @ wv, "old": u @ wv, "svd": torch.linalg.svdvals(w)[0],
                 "frobenius": w.norm(), "entry": w.abs().max()}[sigma_from]
        return sigma, u_new

    return fn


def test_power_iteration_reference_and_mistakes():
    assert checks.check_power_iteration(spectral.power_iteration).passed
    assert checks.check_power_iteration(_power()).passed  # written another way
    for fn, words in [(_power("old"), "uses the old u"), (_power("svd"), "exact sigma from an SVD"),
                      (_power("frobenius"), "Frobenius"), (_power("entry"), "weight clipping"),
                      (_power(normalise_u=False), "not a unit vector"),
                      (lambda w, u: (torch.tensor(1.0), w.T @ u), "output size")]:
        assert words in message(checks.check_power_iteration(fn)), words


def _attention(softmax_dim=-1, residual=True, pool=F.max_pool2d, transposed=False, scale=False, gain=None):
    """A self-attention function, right by default, with one typical mistake switched on by an argument
    (`gain`: what multiplies the attention path instead of gamma)."""

    def fn(x, theta, phi, g, o, gamma):
        n, c, h, w = x.shape
        q = theta(x).flatten(2)
        k, v = (pool(f(x), 2).flatten(2) if pool else f(x).flatten(2) for f in (phi, g))
        logits = q.transpose(1, 2) @ k / ((c // 8) ** 0.5 if scale else 1)
        beta = torch.softmax(logits, dim=softmax_dim)
        attended = (v @ beta if transposed else v @ beta.transpose(1, 2)).reshape(n, -1, h, w)
        out = (gamma if gain is None else gain(gamma)) * o(attended)
        return x + out if residual else out

    return fn


def test_self_attention_reference_and_registration():
    assert checks.check_self_attention(lambda x, theta, phi, g, o, gamma: layers.SelfAttention.forward(
        type("Block", (), dict(theta=theta, phi=phi, g=g, o=o, gamma=gamma))(), x)).passed  # ganlib's forward
    assert checks.check_self_attention(_attention()).passed  # the test's own, independently written block
    assert checks.CHECKS["self_attention"] is checks.check_self_attention


def test_self_attention_mistakes():
    cases = {
        "softmax runs over the queries": _attention(softmax_dim=1),
        "not by 1 + gamma": _attention(gain=lambda gamma: 1 + gamma),  # not the identity when built
        "residual is missing": _attention(residual=False),
        "shapes that do not fit": _attention(transposed=True),  # g @ beta with pooled keys: the product fails
        "attention map is transposed": _attention(transposed=True, pool=None),
        "not max-pooled": _attention(pool=None),
        "average-pooled": _attention(pool=F.avg_pool2d),
        "1/sqrt(C/8)": _attention(scale=True),
        "gets no gradient": _attention(gain=lambda gamma: gamma.item()),
    }
    for expected, fn in cases.items():
        assert expected in message(checks.check_self_attention(fn)), expected

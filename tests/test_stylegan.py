"""StyleGAN: the layers (AdaIN, noise, modulated convolution; the FIR resampling of `ganlib.resampling`), the
generator and discriminator, path length, and the training additions (style mixing, lazy regularisation, exact
resume)."""

import math
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

from gancourse import recipes
from ganlib import layers, losses, resampling, stylegan_training
from ganlib.errors import GanlibError
from ganlib.models import stylegan as sg
from ganlib.models import stylegan_discriminator as sg_d
from ganlib.train import TrainConfig


def tiny_G(style="modulated", resolution=16, **kw):
    torch.manual_seed(0)
    return sg.Generator(resolution, 3, z_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8,
                        style=style, **kw)


def assert_agrees(out, ref, tol=1e-5):
    """out (ganlib, fp32) equals ref (a direct statement, fp64) to `tol` relative to ref's largest entry."""
    assert out.shape == ref.shape, (out.shape, ref.shape)
    err, scale = (out.double() - ref.double()).abs().max().item(), ref.abs().max().item()
    assert err <= tol * scale, f"max difference {err:.2e} against a largest entry of {scale:.2e}"


# The authors' resampling (StyleGAN2-ADA `torch_utils/ops`), written from its general definition: upfirdn2d inserts
# up - 1 zeros after every pixel, zero-pads, convolves with the filter times a gain and keeps every down-th pixel;
# conv2d_resample pads once, at the start, and then filters and convolves without padding. ganlib computes both
# another way (a transposed or a strided convolution), so agreeing here pins the borders too.
TAPS = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
FIR = torch.outer(TAPS, TAPS) / 64  # [4, 4], sums to 1


def authors_upfirdn2d(x, up=1, down=1, pad=(0, 0), gain=1.0):
    """x [N, C, H, W] (fp64) -> zero insertion, padding (before, after), filter, decimation."""
    n, c = x.shape[:2]
    if up > 1:
        inserted = x.new_zeros(n, c, x.shape[2] * up, x.shape[3] * up)
        inserted[:, :, ::up, ::up] = x
        x = inserted
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    kernel = (FIR * gain).flip(0, 1).expand(c, 1, 4, 4)  # convolution = correlation with the flipped filter
    return F.conv2d(x, kernel, groups=c)[:, :, ::down, ::down]


def authors_conv2d_resample(x, weight, up=1, down=1):
    """The authors' conv with up = 2 or down = 2 and padding k // 2 (fp64). For up, the weight is applied as a
    convolution (their flip_weight=False), for down as a correlation (flip_weight=True)."""
    p = weight.shape[-1] // 2
    if up > 1:  # pad (p + 2, p + 1) around the zero-inserted image, filter with gain 4, then the conv
        return F.conv2d(authors_upfirdn2d(x, up=2, pad=(p + 2, p + 1), gain=4.0), weight.flip(2, 3))
    assert down > 1
    # pad (p + 1, p + 1), the conv at full resolution, then filter and keep every other pixel
    return authors_upfirdn2d(F.conv2d(F.pad(x, [p + 1] * 4), weight), down=2)


def authors_modulation(weight, styles, demodulate):
    """StyleGAN2 eqs. 1 and 3, per sample: w'_oik = s_i w_oik, w''_oik = w'_oik / sqrt(sum_ik w'^2_oik + 1e-8)."""
    w = weight[None] * styles[:, None, :, None, None]  # [N, O, I, k, k]
    return w / (w.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8).sqrt() if demodulate else w


# ----------------------------------------------------------------------------------------------------------
# Layers


def test_adain_output_has_the_styles_mean_and_std_per_sample_and_channel():
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(4, 5, 6, 7, generator=g) + torch.randn(4, 5, 1, 1, generator=g)
    scale, bias = torch.rand(4, 5, generator=g) + 0.5, torch.randn(4, 5, generator=g)
    out = layers.adain(x, scale, bias)
    torch.testing.assert_close(out.mean(dim=(2, 3)), bias, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=(2, 3), unbiased=False), scale, atol=1e-4, rtol=1e-4)


def test_adain_uses_instance_not_batch_statistics():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 5, 5, generator=g)
    scale, bias = torch.rand(3, 4, generator=g), torch.randn(3, 4, generator=g)
    out = layers.adain(x, scale, bias)
    other = x.clone()
    other[1:] = 100 * other[1:] + 7  # other samples change wildly: sample 0 must not notice
    torch.testing.assert_close(layers.adain(other, scale, bias)[0], out[0])
    # and each sample's channel forgets its own mean and scale (what AdaIN throws away)
    a = torch.rand(3, 4, 1, 1, generator=g) + 0.1
    torch.testing.assert_close(layers.adain(a * x + 5, scale, bias), out, atol=1e-4, rtol=1e-4)


def test_adain_module_starts_with_scale_one_and_bias_zero():
    torch.manual_seed(0)
    block = layers.AdaIN(channels=6, w_dim=4)
    assert torch.equal(block.affine.bias.detach() * block.affine.lr_mul, torch.cat([torch.ones(6), torch.zeros(6)]))
    x = torch.randn(2, 6, 4, 4)
    normalised = layers.adain(x, torch.ones(2, 6), torch.zeros(2, 6))
    torch.testing.assert_close(block(x, torch.zeros(2, 4)), normalised)  # w = 0: only the biases speak


def test_noise_injection_modes():
    torch.manual_seed(0)
    noise = layers.NoiseInjection(resolution=4, channels=3)
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(noise(x), x)  # strength starts at 0
    with torch.no_grad():
        noise.strength.copy_(torch.tensor([0.0, 1.0, 2.0]))
    r1, r2 = noise(x, "random"), noise(x, "random")
    assert not torch.equal(r1, r2) and torch.equal(r1[:, 0], x[:, 0])
    added = r1 - x  # the same noise map for every channel, times the channel's strength
    torch.testing.assert_close(added[:, 2], 2 * added[:, 1])
    assert not torch.allclose(added[0], added[1])  # but a different map per sample
    c1, c2 = noise(x, "const"), noise(x, "const")
    assert torch.equal(c1, c2)
    torch.testing.assert_close((c1 - x)[0], (c1 - x)[1])  # one stored map for every sample
    assert torch.equal(noise(x, "none"), x)
    with pytest.raises(AssertionError, match="noise_mode"):
        noise(x, "fixed")


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("k", [1, 3])
def test_modulated_conv2d_equals_a_grouped_convolution_with_per_sample_weights(demodulate, k):
    g = torch.Generator().manual_seed(k)
    n, i, o = 3, 4, 5
    x = torch.randn(n, i, 6, 6, generator=g)
    weight, styles = torch.randn(o, i, k, k, generator=g), torch.randn(n, i, generator=g)
    # the direct computation, written out: scale, (demodulate,) one conv group per sample
    w = weight[None] * styles[:, None, :, None, None]  # [N, O, I, k, k]
    if demodulate:
        w = w / w.square().sum(dim=(2, 3, 4), keepdim=True).add(1e-8).sqrt()
    direct = F.conv2d(x.reshape(1, n * i, 6, 6), w.reshape(n * o, i, k, k), padding=k // 2, groups=n)
    direct = direct.reshape(n, o, 6, 6)
    torch.testing.assert_close(layers.modulated_conv2d(x, weight, styles, demodulate), direct, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(layers.modulate_weight(weight, styles, demodulate), w)


def test_demodulated_weights_have_unit_norm_and_keep_unit_variance():
    g = torch.Generator().manual_seed(0)
    weight, styles = torch.randn(16, 32, 3, 3, generator=g), 3 * torch.rand(4, 32, generator=g)
    w = layers.modulate_weight(weight, styles)
    torch.testing.assert_close(w.square().sum(dim=(2, 3, 4)), torch.ones(4, 16))
    x = torch.randn(4, 32, 64, 64, generator=g)  # unit variance in, about unit variance out
    out = layers.modulated_conv2d(x, weight, styles)
    assert abs(out[:, :, 1:-1, 1:-1].var().item() - 1) < 0.05
    # demodulation makes the layer blind to the styles' overall scale; without it the output scales along
    torch.testing.assert_close(layers.modulated_conv2d(x, weight, styles / 100), out, atol=1e-4, rtol=1e-4)
    plain = layers.modulated_conv2d(x, weight, styles, demodulate=False)
    torch.testing.assert_close(layers.modulated_conv2d(x, weight, styles / 100, demodulate=False), plain / 100)


def test_fir_resampling_follows_its_definition():
    g = torch.Generator().manual_seed(0)
    f = resampling.fir_filter()
    assert f.shape == (4, 4) and abs(f.sum().item() - 1) < 1e-6 and torch.equal(f, f.flip(0, 1))
    x = torch.randn(2, 3, 8, 8, generator=g)
    # upsampling: zero insertion, pad (2, 1), filter with 4 f
    zeros = torch.zeros(2, 3, 16, 16)
    zeros[..., ::2, ::2] = x
    direct = F.conv2d(F.pad(zeros, [2, 1, 2, 1]).reshape(6, 1, 19, 19), 4 * f[None, None]).reshape(2, 3, 16, 16)
    up = resampling.upsample2d(x, f)
    torch.testing.assert_close(up, direct)
    bilinear = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(up[..., 1:-1, 1:-1], bilinear[..., 1:-1, 1:-1])
    # downsampling: pad (1, 2), filter with f, keep the even pixels
    direct = F.conv2d(F.pad(x, [1, 2, 1, 2]).reshape(6, 1, 11, 11), f[None, None]).reshape(2, 3, 8, 8)[..., ::2, ::2]
    torch.testing.assert_close(resampling.downsample2d(x, f), direct)
    flat = torch.full((1, 1, 8, 8), 2.0)
    torch.testing.assert_close(resampling.downsample2d(flat, f)[..., 1:-1, 1:-1], torch.full((1, 1, 2, 2), 2.0))


@pytest.mark.parametrize("size", [(4, 4), (5, 7), (8, 8), (3, 6)])
@pytest.mark.parametrize("k", [1, 3])
def test_up_and_down_convolutions_equal_the_authors_borders_included(size, k):
    """StyleGAN2's up-sampling conv (G) and down-sampling conv (D) against the authors' general form, on every
    pixel, with square and odd sizes, and the gradients with respect to the input and the weight."""
    g = torch.Generator().manual_seed(k + 10 * size[0] + size[1])
    x = torch.randn(2, 3, *size, generator=g, requires_grad=True)
    weight = torch.randn(4, 3, k, k, generator=g, requires_grad=True)
    x64, w64 = x.detach().double().requires_grad_(), weight.detach().double().requires_grad_()
    for ours, theirs in [
        (resampling.upsample_conv2d(x, weight, resampling.fir_filter()), authors_conv2d_resample(x64, w64, up=2)),
        (resampling.conv2d_downsample(x, weight, resampling.fir_filter()), authors_conv2d_resample(x64, w64, down=2)),
    ]:
        assert_agrees(ours, theirs)
        readout = torch.randn(theirs.shape, generator=g, dtype=torch.float64)  # gradients of a random readout
        gx, gw = torch.autograd.grad((ours.double() * readout).sum(), (x, weight))
        tx, tw = torch.autograd.grad((theirs * readout).sum(), (x64, w64))
        assert_agrees(gx, tx)
        assert_agrees(gw, tw)


def test_padding_between_the_filters_would_change_the_outer_ring():
    """What the one-padding rule changes: upsampling first and convolving with "same" padding agrees inside and
    differs on the border."""
    g = torch.Generator().manual_seed(0)
    x, weight = torch.randn(1, 3, 6, 6, generator=g), torch.randn(4, 3, 3, 3, generator=g)
    twice = F.conv2d(resampling.upsample2d(x, resampling.fir_filter()), weight.flip(2, 3), padding=1)
    once = resampling.upsample_conv2d(x, weight, resampling.fir_filter())
    torch.testing.assert_close(once[..., 1:-1, 1:-1], twice[..., 1:-1, 1:-1], atol=1e-5, rtol=1e-5)
    assert (once - twice).abs().amax(dim=(0, 1))[0].max() > 0.1  # the first row


@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_up_convolution_equals_per_sample_weights_with_the_authors_resampling(demodulate):
    g = torch.Generator().manual_seed(int(demodulate))
    n, i, o = 3, 4, 5
    x, weight = torch.randn(n, i, 5, 6, generator=g), torch.randn(o, i, 3, 3, generator=g)
    styles = torch.randn(n, i, generator=g)
    w = authors_modulation(weight.double(), styles.double(), demodulate)
    direct = torch.cat([authors_conv2d_resample(x[j: j + 1].double(), w[j], up=2) for j in range(n)])
    out = layers.modulated_conv2d(x, weight, styles, demodulate, up=True, fir=resampling.fir_filter())
    assert_agrees(out, direct)


@pytest.mark.parametrize("up", [False, True])
def test_modulated_synthesis_layer_is_the_authors_layer(up):
    """StyleGAN2's SynthesisLayer: styles = A(w) (bias 1), modulated and demodulated 3x3 conv (up-sampling or not),
    noise times one strength, bias, leaky ReLU times sqrt(2): on every pixel, with the gradient of w."""
    torch.manual_seed(3)
    res = 8
    layer = sg.ModulatedLayer(4, 5, w_dim=6, resolution=res, up=up)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x, w = torch.randn(2, 4, res // 2 if up else res, res // 2 if up else res), torch.randn(2, 6, requires_grad=True)
    w64 = w.detach().double().requires_grad_()
    affine = layer.affine
    styles = w64 @ affine.weight.double().T / math.sqrt(6) + affine.bias.double()  # gain 1, lr_mul 1
    weight = authors_modulation(layer.weight.double(), styles, demodulate=True)
    if up:
        y = torch.cat([authors_conv2d_resample(x[j: j + 1].double(), weight[j], up=2) for j in range(2)])
    else:
        y = torch.cat([F.conv2d(x[j: j + 1].double(), weight[j], padding=1) for j in range(2)])
    y = y + layer.noise.strength.double() * layer.noise.noise_const.double() + layer.bias.double()[:, None, None]
    direct = F.leaky_relu(y, 0.2) * math.sqrt(2)
    out = layer(x, w, noise_mode="const")
    assert_agrees(out, direct)
    readout = torch.randn(out.shape, dtype=torch.float64)
    (ours,) = torch.autograd.grad((out.double() * readout).sum(), w)
    (theirs,) = torch.autograd.grad((direct * readout).sum(), w64)
    assert_agrees(ours, theirs)


def test_torgb_is_a_modulated_1x1_conv_without_demodulation():
    torch.manual_seed(4)
    torgb = sg.ToRGB(6, 3, w_dim=5)
    with torch.no_grad():
        for p in torgb.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x, w = torch.randn(2, 6, 7, 5), torch.randn(2, 5)
    styles = (w.double() @ torgb.affine.weight.double().T / math.sqrt(5) + torgb.affine.bias.double()) / math.sqrt(6)
    direct = torch.einsum("nihw,oi,ni->nohw", x.double(), torgb.weight.double()[:, :, 0, 0], styles)
    assert_agrees(torgb(x, w), direct + torgb.bias.double()[:, None, None])


def test_adain_synthesis_layer_is_stylegans_layer():
    """StyleGAN's layer: the up-sampling conv (weight times sqrt(2 / fan_in)), noise with a strength per channel,
    bias, leaky ReLU, instance norm (eps 1e-8), then x * (1 + y_s) + y_b with y = A(w): StyleGAN's dense layer
    has bias 0 and adds the 1 to the scale; ganlib keeps the 1 inside the scale's bias instead."""
    torch.manual_seed(5)
    layer = sg.AdaINLayer(4, 5, w_dim=6, resolution=8, up=True)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x, w = torch.randn(2, 4, 4, 4), torch.randn(2, 6)
    weight = layer.weight.double() * math.sqrt(2 / (4 * 9))
    y = authors_conv2d_resample(x.double(), weight, up=2)
    y = y + layer.noise.strength.double()[:, None, None] * layer.noise.noise_const.double()
    y = F.leaky_relu(y + layer.bias.double()[:, None, None], 0.2)
    y = (y - y.mean(dim=(2, 3), keepdim=True)) / (y.var(dim=(2, 3), unbiased=False, keepdim=True) + 1e-8).sqrt()
    dense_bias = layer.adain.affine.bias.double() - torch.cat([torch.ones(5), torch.zeros(5)]).double()
    style = w.double() @ layer.adain.affine.weight.double().T / math.sqrt(6) + dense_bias  # StyleGAN's dense(w)
    y_s, y_b = style[:, :5, None, None], style[:, 5:, None, None]
    assert_agrees(layer(x, w, noise_mode="const"), y * (1 + y_s) + y_b)


@pytest.mark.parametrize("res", [8, 16])
def test_discriminator_block_is_the_authors_resnet_block(res):
    """StyleGAN2's D block: conv0 3x3, lrelu; conv1 3x3 with down 2 (filter at R, stride-2 conv), lrelu with gain
    sqrt(0.5); skip: 1x1 with down 2, no bias, gain sqrt(0.5); the sum. Every pixel, and the gradient of x."""
    torch.manual_seed(res)
    block = sg_d.DiscriminatorBlock(4, 6)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(2, 4, res, res, requires_grad=True)
    x64 = x.detach().double().requires_grad_()
    lrelu = lambda t: F.leaky_relu(t, 0.2) * math.sqrt(2)
    gained = lambda conv: conv.weight.double() / math.sqrt(conv.weight[0].numel())
    h = lrelu(F.conv2d(x64, gained(block.conv0), padding=1) + block.conv0.bias.double()[:, None, None])
    h = lrelu(authors_conv2d_resample(h, gained(block.conv1), down=2) + block.conv1.bias.double()[:, None, None])
    direct = h * math.sqrt(0.5) + authors_conv2d_resample(x64, gained(block.skip), down=2) * math.sqrt(0.5)
    out = block(x)
    assert_agrees(out, direct)
    readout = torch.randn(out.shape, dtype=torch.float64)
    (ours,) = torch.autograd.grad((out.double() * readout).sum(), x)
    (theirs,) = torch.autograd.grad((direct * readout).sum(), x64)
    assert_agrees(ours, theirs)


# ----------------------------------------------------------------------------------------------------------
# Generator and discriminator


@pytest.mark.parametrize("resolution,num_ws", [(4, 2), (8, 4), (16, 6), (32, 8)])
@pytest.mark.parametrize("style", sg.BLOCKS)
def test_generator_shapes_and_number_of_ws(resolution, num_ws, style):
    G = tiny_G(style, resolution)
    assert G.num_ws == num_ws == 2 * int(math.log2(resolution)) - 2
    z = torch.randn(3, 8)
    w = G.mapping(z)
    assert w.shape == (3, 8)
    ws = sg.broadcast(w, G.num_ws)
    assert ws.shape == (3, num_ws, 8)
    assert G.synthesis(ws).shape == (3, 3, resolution, resolution)
    assert G(z).shape == (3, 3, resolution, resolution)
    with pytest.raises(GanlibError, match=rf"ws must be \[N, {num_ws}, 8\], got \[3, {num_ws - 1}, 8\]: axis 1 is "
                                          rf"{num_ws - 1}, not {num_ws}; one w per layer"):
        G.synthesis(ws[:, 1:])


@pytest.mark.parametrize("style", sg.BLOCKS)
def test_truncation_psi_zero_with_const_noise_gives_one_image(style):
    G = tiny_G(style).eval()
    with torch.no_grad():
        G.mapping.w_avg.normal_()  # as after training: not the zero vector
        images = G(torch.randn(5, 8), truncation_psi=0.0, noise_mode="const")
        average = G.synthesis(sg.broadcast(G.w_avg[None], G.num_ws), noise_mode="const")
        varied = G(torch.randn(5, 8), truncation_psi=1.0, noise_mode="const")
    torch.testing.assert_close(images, average.expand(5, -1, -1, -1), atol=1e-4, rtol=1e-4)
    assert (varied - varied[:1]).abs().amax(dim=(1, 2, 3))[1:].min() > 1e-3


def test_adain_generator_styles_the_constant_before_its_first_conv():
    """StyleGAN (not StyleGAN2): the learned constant gets noise, bias, lrelu and AdaIN before the 4x4 conv, so
    what that conv sees has, per sample and channel, the mean and std of the style computed from ws[:, 0]."""
    G = tiny_G("adain")
    block = G.synthesis.blocks[0]
    with torch.no_grad():
        block.const.normal_()  # a constant with spatial structure (ones would have no std to normalise)
    seen = {}
    block.conv1.register_forward_pre_hook(lambda module, args: seen.update(x=args[0]))
    ws = torch.randn(3, G.num_ws, G.w_dim)
    G.synthesis(ws, noise_mode="none")
    scale, bias = block.const_adain.affine(ws[:, 0]).chunk(2, dim=1)  # [3, C] each
    x = seen["x"]  # [3, C, 4, 4]
    torch.testing.assert_close(x.mean(dim=(2, 3)), bias, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(x.std(dim=(2, 3), unbiased=False), scale.abs(), atol=1e-4, rtol=1e-4)
    assert not hasattr(tiny_G("modulated").synthesis.blocks[0], "const_adain")  # StyleGAN2: straight to the conv


def test_scaling_z_does_not_change_w():
    G = tiny_G().eval()
    z = torch.randn(4, 8)
    torch.testing.assert_close(G.mapping(z), G.mapping(z * torch.tensor([[0.1], [3.0], [17.0], [1.0]])))


@pytest.mark.parametrize("style", sg.BLOCKS)
def test_every_row_of_ws_influences_the_output(style):
    G = tiny_G(style)
    with torch.no_grad():  # give the ToRGB layers and convs a visible response to their styles
        for p in G.synthesis.parameters():
            p.add_(0.1 * torch.randn_like(p))
        ws = sg.broadcast(G.mapping(torch.randn(2, 8)), G.num_ws).clone()
        base = G.synthesis(ws, noise_mode="const")
        for i in range(G.num_ws):
            changed = ws.clone()
            changed[:, i] += torch.randn(2, 8)
            assert (G.synthesis(changed, noise_mode="const") - base).abs().max() > 1e-4, f"row {i} is ignored"


def test_torgb_shares_its_w_with_the_next_blocks_first_conv():
    G = tiny_G(resolution=8)
    seen = {}
    hooks = [m.register_forward_pre_hook(lambda m, args, name=name: seen.__setitem__(name, args[1]))
             for name, m in G.synthesis.named_modules() if isinstance(m, (sg.ModulatedLayer, sg.ToRGB))]
    ws = torch.randn(1, G.num_ws, 8)
    G.synthesis(ws)
    for h in hooks:
        h.remove()
    row = {name: next(i for i in range(G.num_ws) if torch.equal(w, ws[:, i])) for name, w in seen.items()}
    assert row == {"blocks.0.conv1": 0, "blocks.0.torgb": 1, "blocks.1.conv0": 1, "blocks.1.conv1": 2,
                   "blocks.1.torgb": 3}


def test_w_avg_follows_the_running_mean_only_in_training():
    G = tiny_G()
    z = torch.randn(6, 8)
    with torch.no_grad():
        w = G.mapping(z, update_w_avg=False)
        assert torch.equal(G.w_avg, torch.zeros(8))
        G.mapping(z)  # training mode: 0.995 * 0 + 0.005 * mean(w)
        torch.testing.assert_close(G.w_avg, 0.005 * w.mean(0))
        G.eval()
        G(torch.randn(6, 8))
        torch.testing.assert_close(G.w_avg, 0.005 * w.mean(0))


def test_truncate_and_mix_styles():
    g = torch.Generator().manual_seed(0)
    ws, w_avg = torch.randn(2, 6, 4, generator=g), torch.randn(4, generator=g)
    torch.testing.assert_close(sg.truncate(ws, w_avg, 1.0), ws)
    torch.testing.assert_close(sg.truncate(ws, w_avg, 0.5), w_avg + 0.5 * (ws - w_avg))
    cut = sg.truncate(ws, w_avg, 0.0, cutoff=2)
    assert torch.equal(cut[:, :2], w_avg.expand(2, 2, 4)) and torch.equal(cut[:, 2:], ws[:, 2:])
    other = torch.randn(2, 6, 4, generator=g)
    mixed = sg.mix_styles(ws, other, 2)
    assert torch.equal(mixed[:, :2], ws[:, :2]) and torch.equal(mixed[:, 2:], other[:, 2:])
    assert torch.equal(sg.mix_styles(ws, other, 6), ws) and torch.equal(sg.mix_styles(ws, other, 0), other)
    with pytest.raises(GanlibError, match=r"ws_b must be \[2, 6, 4\], got \[2, 5, 4\]: axis 1 is 5, not 6"):
        sg.mix_styles(ws, other[:, 1:], 2)
    with pytest.raises(GanlibError, match=r"ws must be \[N, \*, 3\], got \[2, 6, 4\]: axis 2 is 4, not 3"):
        sg.truncate(ws, w_avg[:3], 0.5)


def test_mapping_network_w_avg_and_truncation_with_cutoff_are_the_authors():
    """StyleGAN's mapping with lr multiplier 0.01: z / sqrt(mean z^2 + 1e-8), then per layer
    lrelu(x (0.01 W / sqrt(fan_in))^T + 0.01 b) sqrt(2), with the gradient of the stored weights (0.01 / sqrt(fan_in)
    times the effective weight's); w_avg <- lerp(mean w, w_avg, 0.995) in training; the truncation trick on the first
    `cutoff` rows of ws only, through G."""
    G = tiny_G(resolution=8)
    with torch.no_grad():
        for fc in G.mapping.fcs:
            fc.bias.normal_(0, 30)  # stored biases, used times 0.01
        G.mapping.w_avg.normal_()
    z = 3 * torch.randn(5, 8)
    stored = [fc.weight.detach().double().requires_grad_() for fc in G.mapping.fcs]
    x = z.double() / (z.double().square().mean(dim=1, keepdim=True) + 1e-8).sqrt()
    for fc, weight in zip(G.mapping.fcs, stored):
        x = F.leaky_relu(x @ (0.01 * weight / math.sqrt(8)).T + 0.01 * fc.bias.double(), 0.2) * math.sqrt(2)
    w_avg = G.w_avg.clone().double()
    w = G.mapping(z)
    assert_agrees(w, x)
    assert_agrees(G.w_avg, 0.995 * w_avg + 0.005 * x.detach().mean(dim=0))
    readout = torch.randn(5, 8, dtype=torch.float64)
    ours = torch.autograd.grad((w.double() * readout).sum(), [fc.weight for fc in G.mapping.fcs])
    theirs = torch.autograd.grad((x * readout).sum(), stored)
    for a, b in zip(ours, theirs):
        assert_agrees(a, b)
    G.eval()
    with torch.no_grad():
        ws = sg.broadcast(G.mapping(z), G.num_ws).double()  # [5, 4, 8]
        truncated = torch.cat([G.w_avg.double() + 0.6 * (ws[:, :2] - G.w_avg.double()), ws[:, 2:]], dim=1)
        assert_agrees(G(z, truncation_psi=0.6, truncation_cutoff=2, noise_mode="const"),
                      G.synthesis(truncated.float(), noise_mode="const").double())


def test_mapping_layers_learn_slowly():
    G = tiny_G()
    assert len(G.mapping.fcs) == 2 and all(fc.lr_mul == 0.01 for fc in G.mapping.fcs)
    assert G.mapping.fcs[0].weight.std() > 30  # stored as N(0, 1 / lr_mul^2), scaled by lr_mul at run time


def test_noise_changes_fine_detail_only_through_its_strength():
    G = tiny_G()
    z = torch.randn(2, 8)
    with torch.no_grad():
        a, b = G(z, noise_mode="random"), G(z, noise_mode="random")
        torch.testing.assert_close(a, b)  # strengths start at 0: noise has no effect yet
        for m in G.modules():
            if isinstance(m, layers.NoiseInjection):
                m.strength.fill_(0.5)
        a, b = G(z, noise_mode="random"), G(z, noise_mode="random")
        assert (a - b).abs().max() > 1e-3
        torch.testing.assert_close(G(z, noise_mode="const"), G(z, noise_mode="const"))


def test_discriminator_shapes_and_bad_input():
    torch.manual_seed(0)
    D = sg_d.Discriminator(16, 3, channel_base=64, channel_max=8)
    assert D(torch.randn(8, 3, 16, 16)).shape == (8,)
    with pytest.raises(Exception, match="expects 3 channel"):
        D(torch.randn(8, 1, 16, 16))


# ----------------------------------------------------------------------------------------------------------
# Path length


def test_path_lengths_of_a_linear_generator():
    """img = reshape(ws.flatten() @ M): J^T y = M y, so the lengths are known in closed form."""
    g = torch.Generator().manual_seed(0)
    n, num_ws, w_dim, h = 3, 2, 4, 5
    M = torch.randn(num_ws * w_dim, 1 * h * h, generator=g, requires_grad=True)
    ws = torch.randn(n, num_ws, w_dim, generator=g, requires_grad=True)
    images = (ws.flatten(1) @ M).reshape(n, 1, h, h)
    lengths = losses.path_lengths(images, ws, torch.Generator().manual_seed(7))
    y = torch.randn(images.shape, generator=torch.Generator().manual_seed(7)) / h  # the same draw
    jty = (y.flatten(1) @ M.detach().T).reshape(n, num_ws, w_dim)
    torch.testing.assert_close(lengths, jty.square().sum(2).mean(1).sqrt())
    # doubling the generator doubles every length
    lengths2 = losses.path_lengths(2 * images, ws, torch.Generator().manual_seed(7))
    torch.testing.assert_close(lengths2, 2 * lengths)
    penalty, mean = losses.path_length_penalty(lengths, torch.tensor(1.0), decay=0.01)
    torch.testing.assert_close(mean, 1.0 + 0.01 * (lengths.mean() - 1.0))
    torch.testing.assert_close(penalty, (lengths - mean).square().mean())
    penalty.backward()
    assert M.grad is not None and M.grad.abs().sum() > 0  # the penalty trains the generator's weights


@pytest.mark.parametrize("n", [1, 3, 7])
def test_path_length_penalty_value_and_gradient_are_the_authors(n):
    """StyleGAN2-ADA's loss.py: a = lerp(a_old, mean(L), decay) *with* its gradient, penalty mean((L - a)^2). On a
    linear generator (J^T y in closed form), the penalty and G's gradient against the same written directly; a
    detached mean would give G another gradient."""
    g = torch.Generator().manual_seed(n)
    num_ws, w_dim, h = 2, 4, 3
    M = torch.randn(num_ws * w_dim, h * h, generator=g, requires_grad=True)
    ws = torch.randn(n, num_ws, w_dim, generator=g, requires_grad=True)
    lengths = losses.path_lengths((ws.flatten(1) @ M).reshape(n, 1, h, h), ws, torch.Generator().manual_seed(9))
    penalty, mean = losses.path_length_penalty(lengths, torch.tensor(0.8), decay=0.3)
    (ours,) = torch.autograd.grad(penalty, M)
    # direct: J^T y = M y per sample (y ~ N(0, 1) / sqrt(HW), the same draw), L = sqrt(mean over rows of |.|^2)
    M64 = M.detach().double().requires_grad_()
    y = torch.randn(n, 1, h, h, generator=torch.Generator().manual_seed(9)).double().flatten(1) / h
    direct_lengths = (y @ M64.T).reshape(n, num_ws, w_dim).square().sum(2).mean(1).sqrt()
    a = 0.8 + 0.3 * (direct_lengths.mean() - 0.8)
    direct = ((direct_lengths - a) ** 2).mean()
    (theirs,) = torch.autograd.grad(direct, M64, retain_graph=True)
    assert_agrees(penalty, direct)
    assert_agrees(mean, a.detach())
    assert_agrees(ours, theirs)
    assert not mean.requires_grad
    (detached,) = torch.autograd.grad(((direct_lengths - a.detach()) ** 2).mean(), M64)  # what it is not
    assert (detached - theirs).abs().max() > 1e-3 * theirs.abs().max()


# ----------------------------------------------------------------------------------------------------------
# Training


def tiny_trainer(tmp_path=None, **cfg):
    return recipes.make_trainer("stylegan", profile="smoke", data="digits", resolution=16, device="cpu",
                                run_dir=tmp_path, **cfg)


def test_lazy_regularisation_corrects_adam():
    t = tiny_trainer()
    g, d = t.opt_g.param_groups[0], t.opt_d.param_groups[0]
    assert g["lr"] == pytest.approx(0.002 * 4 / 5) and g["betas"][1] == pytest.approx(0.99 ** 0.8)
    assert d["lr"] == pytest.approx(0.002 * 16 / 17) and d["betas"][1] == pytest.approx(0.99 ** (16 / 17))
    assert g["betas"][0] == d["betas"][0] == 0
    plain = tiny_trainer(pl_weight=0.0, r1_gamma=0.0)
    assert plain.opt_g.param_groups[0]["lr"] == plain.opt_d.param_groups[0]["lr"] == 0.002
    decaying = tiny_trainer(steps=4, lr_decay_start=0.5)  # the decay scales the corrected rates
    for _ in range(4):
        decaying.train_step()
    assert decaying.lr_factor() == 0 and decaying.opt_g.param_groups[0]["lr"] == pytest.approx(0.002 * 4 / 5 * 0.5)
    assert decaying.opt_d.param_groups[0]["lr"] == pytest.approx(0.002 * 16 / 17 * 0.5)


def test_style_mixing_regularisation_uses_one_crossover_per_batch():
    t = tiny_trainer(style_mixing=1.0)
    G = t.G
    crossovers = set()
    for _ in range(40):
        w_avg = G.w_avg.clone()
        ws = t.styles(G, torch.randn(4, G.z_dim))
        first = sg.broadcast(ws[:, 0], G.num_ws)
        same = (ws == first).all(dim=2).all(dim=0)  # [num_ws]: rows equal to row 0 for every sample
        k = int(same.long().argmin())  # the first row from the second latent
        assert same[:k].all() and not same[k:].any()
        crossovers.add(k)
        torch.testing.assert_close(G.w_avg, 0.995 * w_avg + 0.005 * ws[:, 0].mean(0))  # the second w is not counted
    assert crossovers == set(range(1, G.num_ws))
    t = tiny_trainer(style_mixing=0.0)
    ws = t.styles(t.G, torch.randn(4, t.G.z_dim))
    assert torch.equal(ws, sg.broadcast(ws[:, 0], t.G.num_ws))


def test_training_runs_path_length_and_resumes_exactly(tmp_path):
    torch.manual_seed(123)
    straight = tiny_trainer(tmp_path / "a", steps=6)
    straight.train(progress=False)
    assert straight.pl_mean > 0 and any("r1" in h for h in straight.history)  # both lazy regularisers ran
    assert any("pl_mean" in h for h in straight.history)
    off = tiny_trainer(tmp_path / "off", steps=2, pl_weight=0.0)
    off.train(progress=False)
    assert off.history and not any("pl_mean" in h for h in off.history)  # no path-length figure without its penalty
    torch.manual_seed(123)
    half = tiny_trainer(tmp_path / "b", steps=6)
    half.train(steps=3, progress=False)
    torch.manual_seed(999)
    resumed = tiny_trainer(tmp_path / "b", steps=6)
    resumed.load_checkpoint()
    resumed.train(progress=False)
    assert torch.equal(straight.pl_mean, resumed.pl_mean)
    for name in ("G", "D", "G_ema"):
        for p, q in zip(getattr(straight, name).state_dict().values(), getattr(resumed, name).state_dict().values()):
            assert torch.equal(p, q), name


def test_sampling_with_truncation(tmp_path):
    t = tiny_trainer(tmp_path, steps=2)
    t.train(progress=False)
    with torch.no_grad():
        t.G_ema.mapping.w_avg.normal_()
    x, labels = t.G_ema.sample(6, seed=1, truncation=0.0)
    assert labels is None and x.shape == (6, 1, 16, 16)
    torch.testing.assert_close(x, x[:1].expand(6, -1, -1, -1))
    a, _ = t.G_ema.sample(6, seed=1)
    b, _ = t.G_ema.sample(6, seed=1)
    assert torch.equal(a, b) and (a - a[:1]).abs().amax() > 0
    # the trainer samples through the same method: its G_ema, the same seed, the same truncation
    torch.testing.assert_close(t.sample(6, seed=1, truncation=0.0)[0], x)
    torch.testing.assert_close(t.sample(6, seed=1)[0], a)
    direct = t.G_ema(torch.randn(6, t.G.z_dim, generator=torch.Generator().manual_seed(1)), truncation_psi=0.5,
                     noise_mode="const")
    torch.testing.assert_close(t.G_ema.sample(6, seed=1, truncation=0.5)[0], direct)


def test_stylegan_options_are_run_options_checked_like_train_options():
    from dataclasses import fields

    assert {"style_mixing", "pl_weight", "lr_g"} <= recipes.option_names("stylegan")
    assert "style_mixing" not in recipes.option_names("dcgan")
    numeric = {f.name for f in fields(stylegan_training.StyleGANOptions) if not isinstance(f.default, (bool, str))}
    assert numeric == set(stylegan_training.StyleGANOptions.RANGES) == {"style_mixing", "pl_weight", "pl_every",
                                                                       "pl_batch_shrink", "pl_decay"}
    t = tiny_trainer(style_mixing=0.25, pl_every=2, lr_g=1e-3)  # the trainer's own and the loop's, side by side
    assert t.options.style_mixing == 0.25 and t.options.pl_every == 2 and t.cfg.lr_g == 1e-3
    assert t.options.pl_weight == recipes.preset("stylegan", "smoke")["trainer"]["pl_weight"] == 2.0  # the preset's
    assert t.opt_g.param_groups[0]["lr"] == pytest.approx(1e-3 * 2 / 3)  # the Adam correction follows pl_every
    for options, message in [({"style_mixing": 1.5}, "style_mixing must be a number in [0, 1], e.g. style_mixing=0.0"),
                             ({"pl_every": 0}, "pl_every must be a whole number >= 1"),
                             ({"pl_decay": 0}, "pl_decay must be a number in (0, 1]"),
                             ({"style_mixin": 0.5}, "style_mixin (did you mean style_mixing?)")]:
        with pytest.raises(GanlibError) as e:
            tiny_trainer(**options)
        assert message in str(e.value), str(e.value)
    with pytest.raises(GanlibError, match=r"style_mixing is an option of stylegan, not of dcgan: train stylegan"):
        recipes.make_trainer("dcgan", profile="smoke", device="cpu", style_mixing=0.5)


def test_command_line_sets_and_resumes_stylegan_options(tmp_path, capsys):
    from gancourse.__main__ import main

    run_dir = tmp_path / "sg"
    base = ["train", "stylegan", "--data", "digits", "--out", str(run_dir), "--profile", "smoke"]
    assert main([*base, "--steps", "2", "--set", "style_mixing=0.5", "--set", "pl_every=2"]) == 0
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["config"]["style_mixing"] == 0.5 and state["config"]["pl_every"] == 2
    capsys.readouterr()
    # resumed: what is not given again stays as trained, what is given is applied and said
    assert main([*base, "--resume", "--steps", "3", "--set", "pl_every=1"]) == 0
    assert "resuming stylegan from step 2 of 3 with steps 2 -> 3, pl_every 2 -> 1\n" in capsys.readouterr().out
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["config"]["style_mixing"] == 0.5 and state["config"]["pl_every"] == 1 and state["step"] == 3
    for option, message in [("style_mixing=2", "style_mixing must be a number in [0, 1]"),
                            ("pl_wieght=1", "pl_wieght (did you mean pl_weight?)")]:
        assert main([*base, "--resume", "--set", option]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_command_line_trains_and_samples_with_truncation(tmp_path, capsys):
    from gancourse.__main__ import main

    run_dir = tmp_path / "sg"
    assert main(["train", "stylegan", "--data", "digits", "--out", str(run_dir), "--profile", "smoke",
                 "--steps", "2"]) == 0
    assert "training stylegan on digits" in capsys.readouterr().out
    assert main(["sample", str(run_dir), "--num", "5", "--out", str(tmp_path / "s.npz"), "--truncation", "0"]) == 0
    import numpy as np

    with np.load(tmp_path / "s.npz") as f:
        images = f["images"]
    assert images.shape == (5, 16, 16, 1) and (images == images[:1]).all()  # psi = 0: the average image


def test_pretrained_generator_is_the_cpu_preset():
    from ganlib import data

    preset = recipes.preset("stylegan", "cpu")
    expected = recipes.default_spec("stylegan", preset, data.load("shapes", resolution=preset["resolution"]))
    G, spec, state = recipes.load_generator(stylegan_training.pretrained_path(), device="cpu")  # weights_only
    assert spec == expected and state["data"] == "shapes" and state["config"]["style_mixing"] == 0.9
    # the record is the preset's, and the run went all the way: what `train stylegan --profile cpu` does today
    ran = {**state["config"], "betas": tuple(state["config"]["betas"])}
    assert ran.pop("channels_last") is False  # an option of the loop when it trained, removed since (always off)
    expected = {**asdict(TrainConfig.from_dict(preset["train"])),
                **asdict(stylegan_training.StyleGANOptions(**preset["trainer"]))}
    assert expected.pop("threads") == 0  # added since it trained: 0 keeps the threads set up, as it ran
    assert ran == expected
    assert state["step"] == preset["train"]["steps"] and "D" not in state and "opt_g" not in state
    assert state["images_seen"] == state["step"] * preset["train"]["batch_size"]
    G, history = stylegan_training.pretrained()
    assert isinstance(G, sg.Generator) and not G.training and history[-1]["step"] == state["step"]
    assert stylegan_training.pretrained_path().stat().st_size < 1_000_000

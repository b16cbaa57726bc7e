"""Tests of ScaledWSConv2d (paper eq. 1), SAME padding and deploy folding."""
import math
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

import nfnet_mm  # noqa: F401
from nfnet_mm.models.layers import ScaledWSConv2d, same_pads
from nfnet_mm.models.layers.activation import (ACTIVATION_GAMMAS,
                                               build_plain_act,
                                               get_activation_gamma)
from nfnet_mm.models.layers.ws_conv import standardize_weight


def tf_same_pads(size, k, s, d=1):
    """TensorFlow's SAME padding, written out plainly.

    out_size = ceil(size / s)
    pad_total = max((out_size - 1) * s + (k - 1) * d + 1 - size, 0)
    pad_before = floor(pad_total / 2), pad_after = pad_total - pad_before
    """
    out_size = math.ceil(size / s)
    pad_total = max((out_size - 1) * s + (k - 1) * d + 1 - size, 0)
    return pad_total // 2, pad_total - pad_total // 2


def plain_ws_weight(w, gain, eps):
    """Eq. (1) elementwise: gain * (W - mean) / sqrt(max(var * fan_in, eps)),
    mean and biased variance over each output unit's fan-in."""
    out = torch.empty_like(w)
    for o in range(w.shape[0]):
        row = w[o].flatten().double()
        n = row.numel()
        mean = row.sum() / n
        var = ((row - mean)**2).sum() / n
        out[o] = (gain[o].double() * (w[o].double() - mean) /
                  torch.sqrt(torch.clamp(var * n, min=eps))).float()
    return out


@pytest.mark.parametrize('groups,k', [(1, 3), (2, 3), (1, 1)])
def test_standardisation_matches_eq1(groups, k):
    torch.manual_seed(0)
    conv = ScaledWSConv2d(4, 6, k, groups=groups, padding='symmetric')
    with torch.no_grad():
        conv.gain.uniform_(0.5, 2.)
        conv.bias.normal_()
    x = torch.randn(2, 4, 9, 9)
    ref_w = plain_ws_weight(conv.weight, conv.gain, 1e-4)
    ref = F.conv2d(x, ref_w, conv.bias, padding=k // 2, groups=groups)
    torch.testing.assert_close(conv(x), ref, rtol=1e-5, atol=1e-5)
    # standardised weights have zero mean and norm gain over the fan-in
    w = conv.get_weight().detach().flatten(1)
    torch.testing.assert_close(w.mean(1), torch.zeros(6), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        w.norm(dim=1), conv.gain.detach(), rtol=1e-4, atol=1e-5)


def test_eps_guard_on_constant_weight():
    conv = ScaledWSConv2d(3, 2, 3, eps=1e-4)
    with torch.no_grad():
        conv.weight.fill_(0.7)  # zero variance
    out = conv(torch.randn(1, 3, 5, 5))
    assert torch.isfinite(out).all()
    # W - mean == 0 (up to rounding) so only the bias (0) remains; without
    # the guard the rsqrt(0) would give inf/nan
    assert out.abs().max() < 1e-4


@pytest.mark.parametrize('size', [7, 8, 9, 10, 15, 16])
@pytest.mark.parametrize('k,s', [(3, 1), (3, 2), (1, 2), (4, 1), (4, 2),
                                 (5, 2)])
def test_same_padding_equals_tf_formula(size, k, s):
    assert same_pads(size, k, s) == tf_same_pads(size, k, s)
    torch.manual_seed(0)
    conv = ScaledWSConv2d(2, 3, k, stride=s, padding='same')
    x = torch.randn(1, 2, size, size + 1)
    ph, pw = tf_same_pads(size, k, s), tf_same_pads(size + 1, k, s)
    ref = F.conv2d(
        F.pad(x, (pw[0], pw[1], ph[0], ph[1])),
        conv.get_weight(),
        conv.bias,
        stride=s)
    out = conv(x)
    assert out.shape[-2:] == (math.ceil(size / s), math.ceil((size + 1) / s))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_same_padding_static_where_possible():
    x = torch.randn(1, 2, 8, 8)
    conv = ScaledWSConv2d(2, 2, 3, stride=1, padding='same')
    assert conv.padding == (1, 1)
    with mock.patch.object(F, 'pad', side_effect=AssertionError('F.pad')):
        conv(x)  # stride 1, odd kernel: the conv pads, no F.pad
        # stride 2, odd input: symmetric pads (1, 1), done by the conv
        ScaledWSConv2d(
            2, 2, 3, stride=2, padding='same')(
                torch.randn(1, 2, 9, 9))
    # stride 2, even input: (0, 1), only the remainder goes to F.pad
    conv2 = ScaledWSConv2d(2, 2, 3, stride=2, padding='same')
    with mock.patch.object(F, 'pad', wraps=F.pad) as pad:
        conv2(x)
    pad.assert_called_once()
    assert pad.call_args[0][1] == (0, 1, 0, 1)


def test_symmetric_and_explicit_padding():
    x = torch.randn(1, 2, 8, 8)
    conv = ScaledWSConv2d(2, 2, 3, stride=2, padding='symmetric')
    ref = F.conv2d(x, conv.get_weight(), conv.bias, stride=2, padding=1)
    torch.testing.assert_close(conv(x), ref)
    conv = ScaledWSConv2d(2, 2, 3, padding=0)
    assert conv(x).shape[-1] == 6
    with pytest.raises(ValueError, match="'valid'.*'same'"):
        ScaledWSConv2d(2, 2, 3, padding='valid')


@pytest.mark.parametrize('s,size', [(1, 9), (2, 10), (2, 9)])
def test_switch_to_deploy(s, size):
    torch.manual_seed(0)
    conv = MODELS.build(
        dict(
            type='ScaledWSConv2d',
            in_channels=4,
            out_channels=8,
            kernel_size=3,
            stride=s,
            groups=2))
    with torch.no_grad():
        conv.gain.uniform_(0.5, 2.)
        conv.bias.normal_()
    x = torch.randn(2, 4, size, size)
    ref = conv(x)
    conv.switch_to_deploy()
    assert set(conv.state_dict()) == {'weight', 'bias'}
    torch.testing.assert_close(conv(x), ref, atol=1e-5, rtol=0)
    # round trip: a folded state dict loads strictly into a folded conv
    other = ScaledWSConv2d(4, 8, 3, stride=s, groups=2)
    other.switch_to_deploy()
    other.load_state_dict(conv.state_dict(), strict=True)
    torch.testing.assert_close(other(x), ref, atol=1e-5, rtol=0)


def test_input_scale_is_exact_and_folds():
    """input_scale c: conv(x) == plain WS conv of (c * x)."""
    torch.manual_seed(0)
    conv = ScaledWSConv2d(3, 4, 3, stride=2)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(1, 3, 8, 8)
    ref = conv(x * 1.7)
    conv.input_scale = 1.7
    assert 'gain' in conv.state_dict() and 'input_scale' not in str(
        list(conv.state_dict()))
    torch.testing.assert_close(conv(x), ref, atol=1e-5, rtol=1e-5)
    conv.switch_to_deploy()
    assert conv.input_scale == 1.0
    torch.testing.assert_close(conv(x), ref, atol=1e-5, rtol=1e-5)


def test_activation_gamma():
    act = build_plain_act(dict(type='GELU', approximate='tanh', gamma=3.))
    x = torch.randn(1000)
    torch.testing.assert_close(act(x), F.gelu(x, approximate='tanh'))
    assert isinstance(
        build_plain_act(dict(type='GELU', approximate='none')), torch.nn.GELU)
    assert get_activation_gamma(dict(type='ReLU')) == ACTIVATION_GAMMAS['ReLU']
    assert get_activation_gamma(dict(type='LeakyReLU', gamma=1.5)) == 1.5
    with pytest.raises(ValueError, match="'Hardswish'.*'GELU'"):
        get_activation_gamma(dict(type='Hardswish'))


@pytest.mark.parametrize('act_type', sorted(ACTIVATION_GAMMAS))
def test_gamma_preserves_unit_variance(act_type):
    """gamma is defined so that gamma * act(z), z ~ N(0, 1), has unit
    second moment around its mean; check it by sampling."""
    torch.manual_seed(0)
    z = torch.randn(2_000_000, dtype=torch.float64)
    cfg = dict(type=act_type)
    y = build_plain_act(cfg)(z) * get_activation_gamma(cfg)
    assert abs(y.var().item() - 1.) < 0.01


def autograd_ws(w, gain, eps, input_scale=1.):
    """Eq. (1) as plain autograd ops, DeepMind's guard written out:
    gain * (W - mean) * rsqrt(max(var * fan_in, eps))."""
    fan_in = w[0].numel()
    var, mean = torch.var_mean(w, dim=(1, 2, 3), keepdim=True, unbiased=False)
    scale = torch.rsqrt(torch.clamp(var * fan_in, min=eps))
    return gain.view(-1, 1, 1, 1) * (w - mean) * scale * input_scale


def ws_inputs(dtype=torch.float64):
    """Rows with normal variance, one constant (zero variance) and one tiny
    (var * fan_in < eps: the guard is active there) row."""
    torch.manual_seed(0)
    w = torch.randn(5, 3, 3, 3, dtype=dtype)
    w[1] = 0.3
    w[3] = 0.3 + 1e-4 * torch.randn(3, 3, 3, dtype=dtype)
    gain = torch.rand(5, dtype=dtype) + 0.5
    return w.requires_grad_(), gain.requires_grad_()


@pytest.mark.parametrize('input_scale', [1., 1.7])
def test_ws_gradcheck_float64(input_scale):
    w, gain = ws_inputs()
    fan_in = w[0].numel()
    var = w.detach().var(dim=(1, 2, 3), unbiased=False) * fan_in
    assert (var < 1e-4).tolist() == [False, True, False, True, False]
    assert torch.autograd.gradcheck(
        lambda w, g: standardize_weight(w, g, 1e-4, input_scale), (w, gain))
    # and it equals the plain autograd form, values and gradients
    out = standardize_weight(w, gain, 1e-4, input_scale)
    ref = autograd_ws(w, gain, 1e-4, input_scale)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, (w, gain), grad)
    theirs = torch.autograd.grad(ref, (w, gain), grad)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # in the guarded rows the scale is the constant rsqrt(eps): the
    # gradient is the centred, scaled incoming gradient
    g1 = grad[1] - grad[1].mean()
    torch.testing.assert_close(ours[0][1],
                               gain[1].detach() * 100. * input_scale * g1)


@pytest.mark.parametrize('mean_over_std', [0., 10., 100.])
def test_ws_float32_gradient_accuracy(mean_over_std):
    """The backward uses ``c = w - mean`` unexpanded; in float32 its error
    against the float64 gradient stays within 8x that of plain autograd,
    also for rows whose mean is 100 stds away from 0 (a one-pass variance
    or a dropped centring would be off by orders of magnitude more)."""
    torch.manual_seed(0)
    sign = torch.randn(64, 1, 1, 1, dtype=torch.float64).sign()
    w64 = 0.05 * (
        torch.randn(64, 32, 3, 3, dtype=torch.float64) + mean_over_std * sign)
    g64 = torch.rand(64, dtype=torch.float64) + 0.5
    grad64 = torch.randn_like(w64)

    def grads(fn, dtype):
        w, g = (t.to(dtype).requires_grad_() for t in (w64, g64))
        return torch.autograd.grad(
            fn(w, g, 1e-4, 1.7), (w, g), grad64.to(dtype))

    ref = grads(autograd_ws, torch.float64)
    for ours, plain, exact in zip(
            grads(standardize_weight, torch.float32),
            grads(autograd_ws, torch.float32), ref):
        err = (ours.double() - exact).norm() / exact.norm()
        plain_err = (plain.double() - exact).norm() / exact.norm()
        assert err <= 8 * max(plain_err, 1e-7), (err, plain_err)


def test_ws_double_backward_raises_instead_of_a_wrong_value():
    """The analytic backward is not differentiated again: a second-order
    gradient (e.g. a gradient penalty) must fail, not miss terms."""
    w, gain = ws_inputs()
    loss = standardize_weight(w, gain, 1e-4, 1.7).pow(3).sum()
    (grad_w, ) = torch.autograd.grad(loss, w, create_graph=True)
    with pytest.raises(RuntimeError, match='once_differentiable'):
        (loss + grad_w.square().sum()).backward()


def test_ws_under_bf16_autocast():
    """fp32 weights under bf16 autocast: the standardisation stays fp32
    (only the conv runs in bf16)."""
    w, gain = ws_inputs(torch.float32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = standardize_weight(w, gain, 1e-4, 1.7)
        out.sum().backward()
    assert out.dtype == torch.float32 and w.grad.dtype == torch.float32
    torch.testing.assert_close(out, autograd_ws(w, gain, 1e-4, 1.7))
    conv = ScaledWSConv2d(3, 4, 3)
    x = torch.randn(1, 3, 8, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = conv(x)
        y.float().sum().backward()
    assert y.dtype == torch.bfloat16
    assert conv.weight.grad.dtype == torch.float32


def test_build_through_mmcv_build_conv_layer():
    """Other backbones can use it via conv_cfg=dict(type='ScaledWSConv2d')."""
    from mmcv.cnn import build_conv_layer
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        conv = build_conv_layer(
            dict(type='ScaledWSConv2d'), 3, 8, 3, stride=2, padding=1)
    assert isinstance(conv, ScaledWSConv2d) and conv.pad_mode == 'explicit'
    x = torch.randn(1, 3, 9, 9)
    ref = F.conv2d(x, conv.get_weight(), conv.bias, stride=2, padding=1)
    torch.testing.assert_close(conv(x), ref)

"""timm dm_nfnet -> ours: the converter and numerical parity.

How the comparison is made exact instead of loosening the tolerance:

- Activation: timm's dm_nfnet uses the exact (erf) GELU; ours is built with
  ``act_cfg=dict(type='GELU', approximate='none')`` (our default is the tanh
  approximation used by DeepMind).
- Weight standardisation: timm computes ``(W - mean) / sqrt(fan_in * (var +
  eps))`` (eps 1e-5), we compute DeepMind's ``(W - mean) * rsqrt(max(fan_in *
  var, eps))``. With our ``ws_eps=0`` and timm's eps set to 1e-12 (timm's
  batch-norm based kernel refuses 0) the two formulas coincide up to a
  relative 1e-12 / var < 1e-7 for these weights, below fp32 resolution.
- timm initialises the skip gains and the conv biases to 0, which would hide
  errors in the residual branches: they (and the gains) are randomised.
"""
import pytest
import timm
import torch
from helpers import TIMM_TINY_ARCH, classifier_cfg, timm_tiny_cfg
from mmpretrain.registry import MODELS
from timm.layers import ScaledStdConv2dSame
from timm.models.nfnet import NormFreeNet

import nfnet_mm  # noqa: F401
from nfnet_mm.converters import (ConversionError, convert_timm_file,
                                 convert_timm_state_dict, infer_arch)


def prepare_timm(model, seed=0, fill_weights=False):
    """Randomise gains/biases/skip gains; make timm's WS eps negligible.

    With ``fill_weights`` the weights are drawn too (for a model built on the
    meta device and materialised with ``to_empty``: much faster than timm's
    init for the big variants), N(0, 1 / fan_in).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('gain'):  # conv gains and skipinit gains
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith('bias'):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif fill_weights:
                p.copy_(torch.randn(p.shape, generator=g) * p[0].numel()**-0.5)
    n = 0
    for m in model.modules():
        if isinstance(m, ScaledStdConv2dSame):
            m.eps = 1e-12
            n += 1
    assert n > 0
    return model.eval()


def build_ours(arch, num_classes=1000, matched=True):
    matched = dict(
        act_cfg=dict(type='GELU', approximate='none'),
        ws_eps=0.) if matched else {}
    return MODELS.build(classifier_cfg(arch, num_classes, **matched)).eval()


def assert_parity(ref, ours, x):
    with torch.no_grad():
        a = ref(x)
        b = ours(x, mode='tensor')
    assert a.shape == b.shape
    err = (a - b).abs().max().item()
    assert err <= 1e-4 * a.abs().max().item(), err


@pytest.mark.slow
@pytest.mark.parametrize('variant,size', [('f0', 80), ('f1', 48)])
def test_parity_with_timm(variant, size):
    # both sides are built on the meta device and materialised without their
    # (slow, irrelevant here) init: timm's weights are drawn by prepare_timm,
    # ours are the converted tensors themselves (assign=True)
    with torch.device('meta'):
        ref = timm.create_model(f'dm_nfnet_{variant}', pretrained=False)
        ours = build_ours(variant)
        default = build_ours(variant, matched=False)
    ref = prepare_timm(ref.to_empty(device='cpu'), fill_weights=True)
    converted = convert_timm_state_dict(ref.state_dict())
    assert infer_arch(converted) == variant
    ours.load_state_dict(converted, strict=True, assign=True)
    # odd width exercises the asymmetric SAME padding of strided convs
    assert_parity(ref, ours, torch.randn(2, 3, size, size + 1))
    # the control: our defaults (tanh GELU, eps 1e-4) really are different
    default.load_state_dict(converted, strict=True, assign=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(
            default(x, mode='tensor'), ref(x), atol=1e-5, rtol=0)


def test_parity_tiny_and_deploy():
    torch.manual_seed(0)
    ref = prepare_timm(NormFreeNet(timm_tiny_cfg(), num_classes=7))
    ours = build_ours(TIMM_TINY_ARCH, num_classes=7)
    ours.load_state_dict(
        convert_timm_state_dict(ref.state_dict()), strict=True)
    for size in (33, 48):
        assert_parity(ref, ours, torch.randn(2, 3, size, size))
    ours.backbone.switch_to_deploy()
    assert_parity(ref, ours, torch.randn(2, 3, 40, 41))


def test_converter_shapes_and_every_key_used():
    ref = NormFreeNet(timm_tiny_cfg(), num_classes=7)
    src = ref.state_dict()
    out = convert_timm_state_dict(src)
    assert len(out) == len(src)
    assert out['backbone.stem.conv1.gain'].shape == (4, )
    assert out['backbone.stages.0.0.se.fc1.weight'].shape == (16, 32)
    assert out['backbone.stages.1.0.shortcut.conv.weight'].shape == (64, 32, 1,
                                                                     1)
    assert out['backbone.stages.1.1.skip_gain'].shape == ()
    assert set(out) == set(
        build_ours(TIMM_TINY_ARCH, num_classes=7).state_dict())


def test_converter_fails_listing_leftovers():
    src = NormFreeNet(timm_tiny_cfg(), num_classes=7).state_dict()
    src['stages.0.0.extra.weight'] = torch.zeros(1)
    src['head.fc.running_mean'] = torch.zeros(1)
    with pytest.raises(ConversionError) as err:
        convert_timm_state_dict(src)
    assert 'stages.0.0.extra.weight' in str(err.value)
    assert 'head.fc.running_mean' in str(err.value)
    assert 'no rule converts (2)' in str(err.value)


@pytest.mark.parametrize('fmt', ['pth', 'wrapped', 'safetensors'])
def test_converter_cli(tmp_path, fmt):
    ref = prepare_timm(NormFreeNet(timm_tiny_cfg(), num_classes=7))
    sd = ref.state_dict()
    if fmt == 'safetensors':
        from safetensors.torch import save_file
        src = tmp_path / 'm.safetensors'
        save_file({k: v.contiguous() for k, v in sd.items()}, str(src))
    else:
        src = tmp_path / 'm.pth'
        torch.save(sd if fmt == 'pth' else dict(state_dict=sd), src)
    dst = tmp_path / 'out.pth'
    convert_timm_file(str(src), str(dst))
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'}
    assert ckpt['meta']['converted_from'] == 'timm'
    ours = build_ours(TIMM_TINY_ARCH, num_classes=7)
    ours.load_state_dict(ckpt['state_dict'], strict=True)
    assert_parity(ref, ours, torch.randn(1, 3, 32, 32))


def test_converted_checkpoint_as_backbone_init_cfg(tmp_path):
    """A converted file works as ``init_cfg=dict(type='Pretrained', ...,
    prefix='backbone.')`` (how detectors/segmentors load it)."""
    ref = prepare_timm(NormFreeNet(timm_tiny_cfg(), num_classes=7))
    src, dst = tmp_path / 'm.pth', tmp_path / 'out.pth'
    torch.save(ref.state_dict(), src)
    convert_timm_file(str(src), str(dst))
    backbone = MODELS.build(
        dict(
            type='NFNet',
            arch=TIMM_TINY_ARCH,
            out_indices=(0, 1, 2, 3),
            init_cfg=dict(
                type='Pretrained', checkpoint=str(dst), prefix='backbone.')))
    backbone.init_weights()
    expected = torch.load(dst, weights_only=True)['state_dict']
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, expected['backbone.' + key])

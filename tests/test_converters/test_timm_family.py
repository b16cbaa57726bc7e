"""timm's 35 NF models: sizes, logits, folding and feature maps."""
import os.path as osp

import pytest
import timm
import torch
from helpers import REPO, run_tool
from mmengine.runner import load_checkpoint
from mmpretrain.registry import MODELS

import nfnet_mm  # noqa: F401
from nfnet_mm.converters import (TIMM_MODELS, ConversionError,
                                 convert_timm_state_dict, timm_model_cfg)

NF_PREFIXES = ('nf_', 'nfnet_', 'dm_nfnet_', 'eca_nfnet_')
TIMM_NAMES = sorted(n for n in timm.list_models() if n.startswith(NF_PREFIXES))
# the six timm-trained weights, then one of every other family
PARITY = [
    'eca_nfnet_l0', 'eca_nfnet_l1', 'eca_nfnet_l2', 'nfnet_l0', 'nf_resnet50',
    'nf_regnet_b1', 'dm_nfnet_f0', 'nfnet_f0', 'nf_seresnet26',
    'nf_ecaresnet26'
]
# the fast suite (-m "not slow") keeps the smallest weighted model
FAST = ('nf_regnet_b1', )


def _fast_only(names):
    return [
        n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
        for n in names
    ]


def test_every_timm_nf_name_is_known():
    assert len(TIMM_NAMES) == 35
    assert set(TIMM_NAMES) == set(TIMM_MODELS)


@pytest.mark.parametrize('name', _fast_only(TIMM_NAMES))
def test_parameter_count_is_timms(name):
    with torch.device('meta'):
        ours = MODELS.build(timm_model_cfg(name))
        theirs = timm.create_model(name)
    assert (sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in theirs.parameters()))


def _timm_randomized(name, num_classes=1000):
    """timm's model at random init with gains, biases and skip gains moved
    off their init (0 or 1), so that every one of them matters."""
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=num_classes).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith(('gain', 'bias')):
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model


def _converted(name, timm_model, num_classes=1000):
    ours = MODELS.build(timm_model_cfg(name, num_classes)).eval()
    sd = convert_timm_state_dict(timm_model.state_dict(), model=name)
    ours.load_state_dict(sd, strict=True)
    return ours


@pytest.mark.parametrize('name', _fast_only(PARITY))
def test_converted_logits_and_folding_match_timm(name):
    theirs = _timm_randomized(name, num_classes=10)
    ours = _converted(name, theirs, num_classes=10)
    x = torch.randn(2, 3, 80, 96)
    with torch.no_grad():
        ref = theirs(x)
        got = ours(x, mode='tensor')
        scale = ref.abs().max()
        assert (got - ref).abs().max() <= 1e-4 * scale
        ours.backbone.switch_to_deploy()
        folded = ours(x, mode='tensor')
    assert (folded - got).abs().max() <= 1e-5 * scale


@pytest.mark.parametrize('name',
                         ['nf_resnet50', 'eca_nfnet_l0', 'nf_regnet_b1'])
def test_stage_outputs_are_timms_features(name):
    theirs = _timm_randomized(name)
    ours = _converted(name, theirs)
    ours.backbone.out_indices = (0, 1, 2, 3)
    with torch.device('meta'):
        feats = timm.create_model(
            name, features_only=True, out_indices=(1, 2, 3, 4))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got = ours.backbone(x)
        ref = theirs.forward_intermediates(
            x, indices=[1, 2, 3], intermediates_only=True)
    assert ours.backbone.out_channels == feats.feature_info.channels()
    assert [t.shape[1:]
            for t in got] == [(c, 64 // r, 64 // r) for c, r in zip(
                feats.feature_info.channels(), feats.feature_info.reduction())]
    for a, b in zip(got[:3], ref):  # the residual stream, unactivated
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_wrong_model_name_is_refused():
    sd = timm.create_model('nf_resnet26').state_dict()
    with pytest.raises(
            ConversionError,
            match=r'missing in the source.*'
            r'stages\.2\.2\.conv1\.weight'):
        convert_timm_state_dict(sd, model='nf_resnet50')
    with pytest.raises(ConversionError, match="'nf_resnet51'"):
        convert_timm_state_dict(sd, model='nf_resnet51')
    with pytest.raises(ValueError, match="Unknown timm NF model 'resnet50'"):
        timm_model_cfg('resnet50')


@pytest.mark.slow
def test_cli_converts_by_model_name(tmp_path, capsys):
    theirs = _timm_randomized('nf_regnet_b0')
    src, dst = tmp_path / 'timm.pth', tmp_path / 'ours.pth'
    torch.save(dict(state_dict=theirs.state_dict()), src)
    tool = 'tools/model_converters/timm_to_mmpretrain.py'
    assert run_tool(tool, src, dst, '--model', 'nf_regnet_b0') == 0
    assert 'arch b0' in capsys.readouterr().out
    ours = MODELS.build(timm_model_cfg('nf_regnet_b0')).eval()
    ckpt = load_checkpoint(ours, str(dst), strict=True)
    assert ckpt['meta']['timm_model'] == 'nf_regnet_b0'
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, mode='tensor'), theirs(x))
    # the wrong model: one error, nothing written
    other = tmp_path / 'other.pth'
    assert run_tool(tool, src, other, '--model', 'nf_regnet_b1') == 1
    assert 'missing in the source' in capsys.readouterr().err
    assert not osp.exists(other)


@pytest.mark.slow
@pytest.mark.parametrize('rel', [
    'configs/nf_regnet/nf-regnet-b1_8xb128_in1k.py',
    'configs/nf_resnet/nf-resnet50_8xb128_in1k.py'
])
def test_family_config_exports_folded_onnx(rel, tmp_path):
    pytest.importorskip('onnxruntime')
    from nfnet_mm import deploy
    report = deploy.export_and_check(
        osp.join(REPO, rel),
        'none',
        str(tmp_path / 'model.onnx'),
        img=osp.join(REPO, 'demo', 'demo.png'),
        shape=(64, 64))
    assert report['folded'] and report['max_abs_diff'] <= 1e-4


@pytest.mark.slow
def test_agc_default_exclusion_names_the_family_head():
    """The shipped AGC exclusion matches every family's classifier weight."""
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/_base_/schedules/imagenet_bs1024_nfnet.py'))
    for name in ('nf_resnet26', 'nf_regnet_b0', 'eca_nfnet_l0'):
        model = MODELS.build(timm_model_cfg(name, num_classes=10))
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        wrapper.bind_model(model)  # resolves `exclude`, or raises
        names = {id(p): n for n, p in model.named_parameters()}
        assert [names[i] for i in wrapper._excluded] == ['head.fc.weight']

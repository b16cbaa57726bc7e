"""Our downstream configs as shipped: type naming across scopes, channels.

NFNet is registered in MMPretrain's MODELS. MMDet's and MMSeg's MODELS are
its siblings (all children of MMEngine's root registry), so from their
scopes the backbone must be named ``'mmpretrain.NFNet'``; a plain ``'NFNet'``
is not found.
"""
import pytest
import torch
from helpers import F0_CHANNELS, check_backbone_config, load_downstream_config

pytest.importorskip(
    'mmdet',
    reason='MMDetection 3.3.0 is not installed (the `downstream` '
    'extra: pip install -e ".[downstream]")')
pytest.importorskip(
    'mmseg',
    reason='MMSegmentation 1.2.2 is not installed (the `downstream` '
    'extra: pip install -e ".[downstream]")')
pytest.importorskip(
    'mmdet.models',
    reason='mmdet.models cannot be imported here (needs mmcv '
    'ops)',
    exc_type=ImportError)
pytest.importorskip(
    'mmseg.models',
    reason='mmseg.models cannot be imported here (needs mmcv '
    'ops and ftfy)',
    exc_type=ImportError)

from mmengine.registry import DefaultScope  # noqa: E402

from nfnet_mm.models.backbones import NFNet  # noqa: E402

CONFIGS = {
    'upernet_nfnet-f0_4xb4-160k_ade20k-512x512.py': 'mmseg',
    'retinanet_nfnet-f0_fpn_1x_coco.py': 'mmdet',
    'faster-rcnn_nfnet-f0_fpn_1x_coco.py': 'mmdet',
    'retinanet_eca-nfnet-l0_fpn_1x_coco.py': 'mmdet',
}
# the arch and its four output widths (timm's eca_nfnet_l0 ends at 2304)
ARCHS = {'eca-l0': [256, 512, 1536, 2304], 'f0': F0_CHANNELS}


def _models(scope: str):
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_backbone_type_needs_the_mmpretrain_prefix(scope):
    models = _models(scope)
    assert models.get('mmpretrain.NFNet') is NFNet
    assert models.get('NFNet') is None
    with DefaultScope.overwrite_default_scope(scope):
        with pytest.raises(KeyError, match='NFNet is not in the'):
            models.build(dict(type='NFNet'))


@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_shipped_config_backbone_matches_the_neck(config):
    """The backbone as configured feeds the neck/decoder the right widths.

    Built and run on the ``meta`` device: shapes only, no compute.
    """
    scope = CONFIGS[config]
    cfg = load_downstream_config(config)
    assert cfg.default_scope == scope
    arch = 'eca-l0' if 'eca-nfnet-l0' in config else 'f0'
    check_backbone_config(cfg, arch)
    channels = ARCHS[arch]
    backbone_cfg = cfg.model.backbone.copy()
    backbone_cfg.init_cfg = None
    with DefaultScope.overwrite_default_scope(scope), torch.device('meta'):
        backbone = _models(scope).build(backbone_cfg)
        outs = backbone(torch.empty(1, 3, 256, 320))
    assert isinstance(backbone, NFNet)
    assert [tuple(o.shape) for o in outs] == [
        (1, c, 256 // s, 320 // s) for c, s in zip(channels, (4, 8, 16, 32))
    ]
    if scope == 'mmseg':
        assert cfg.model.pretrained is None
        assert cfg.model.decode_head.in_channels == channels
        assert cfg.model.decode_head.in_index == [0, 1, 2, 3]
        aux_index = cfg.model.auxiliary_head.in_index
        assert cfg.model.auxiliary_head.in_channels == channels[aux_index]
    else:
        assert cfg.model.neck.in_channels == channels
        frozen = [backbone.stem, backbone.stages[0]]
        assert cfg.model.backbone.frozen_stages == 1
        assert all(not p.requires_grad for m in frozen for p in m.parameters())
        assert all(p.requires_grad for p in backbone.stages[1].parameters())

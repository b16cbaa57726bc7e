"""Our classification checkpoints initialise a detector's NFNet backbone.

The detector tests skip without MMDetection; the ``StrictPretrained`` ones
always run.

``StrictPretrained`` (nfnet_mm/models/utils/strict_pretrained.py) loads the
``backbone.`` part of an ImageClassifier checkpoint and reports every missing,
unexpected or misshaped key; MMEngine's ``Pretrained`` only logs them.
"""
import logging

import pytest
import torch
from helpers import TINY_ARCH, classifier_cfg, load_downstream_config
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmengine.runner import save_checkpoint

from nfnet_mm.models.utils import PretrainedKeysError, StrictPretrained

FASTER_RCNN = 'faster-rcnn_nfnet-f0_fpn_1x_coco.py'


def _classifier_state(arch) -> dict:
    """An ImageClassifier state dict with random values in EVERY tensor.

    Random values (not the init, where skip gains and biases are zero and
    gains one) make a tensor that was not loaded visible.
    """
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        clf = MODELS.build(classifier_cfg(arch))
    gen = torch.Generator().manual_seed(0)
    return {
        k: torch.randn(v.shape, generator=gen).to(v.dtype)
        for k, v in clf.state_dict().items()
    }


def _save(state: dict, path) -> str:
    save_checkpoint({'state_dict': state, 'meta': dict(epoch=1)}, str(path))
    return str(path)


def _backbone_keys(state: dict) -> dict:
    return {
        k[len('backbone.'):]: v
        for k, v in state.items() if k.startswith('backbone.')
    }


def _need_mmdet():
    """Only the detector tests need MMDetection (the `downstream` extra)."""
    pytest.importorskip(
        'mmdet',
        reason='MMDetection 3.3.0 is not installed (the '
        '`downstream` extra: pip install -e ".[downstream]")')
    pytest.importorskip(
        'mmdet.models',
        exc_type=ImportError,
        reason='mmdet.models cannot be imported here (needs mmcv ops)')


def _detector(arch, checkpoint: str):
    _need_mmdet()
    from mmdet.registry import MODELS
    cfg = load_downstream_config(FASTER_RCNN)
    cfg.model.backbone.arch = arch
    cfg.model.backbone.init_cfg.checkpoint = checkpoint
    if arch != 'f0':
        cfg.model.neck.in_channels = [32, 64, 96, 256]
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg.model)


def _tiny_backbone(**kwargs):
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(dict(type='NFNet', arch=TINY_ARCH, **kwargs))


@pytest.fixture(scope='module')
def tiny_state():
    return _classifier_state(TINY_ARCH)


def test_f0_classifier_checkpoint_initialises_detector_backbone(tmp_path):
    """All F0 backbone tensors come from the checkpoint, none is left over."""
    state = _classifier_state('f0')
    path = _save(state, tmp_path / 'nfnet-f0_cls.pth')
    expected = _backbone_keys(state)
    del state

    detector = _detector('f0', path)  # the config's own F0 + init_cfg
    assert detector.backbone.init_cfg['type'] == 'StrictPretrained'
    detector.init_weights()
    loaded = detector.backbone.state_dict()
    assert set(loaded) == set(expected)
    # 17 tensors per block (4 convs x 3, SE 4, skip gain), 3 per other conv
    # (4 stem, 4 transition shortcuts, final): the contract of docs/design.md
    assert len(loaded) == 17 * 12 + 3 * (4 + 4 + 1)
    for key, value in loaded.items():
        assert torch.equal(value, expected[key]), key
    # the head (not in the backbone) is untouched by the backbone's init
    assert not any(k.startswith('head.') for k in loaded)


def test_tiny_detector_missing_key_raises_in_init_weights(
        tmp_path, tiny_state):
    state = dict(tiny_state)
    del state['backbone.final_conv.weight']
    detector = _detector(TINY_ARCH, _save(state, tmp_path / 'c.pth'))
    with pytest.raises(PretrainedKeysError, match=r'final_conv\.weight'):
        detector.init_weights()


def test_unexpected_and_misshaped_keys_are_reported(tmp_path, tiny_state):
    state = dict(tiny_state)
    state['backbone.stages.9.0.conv1.weight'] = torch.zeros(1)
    state['backbone.stem.conv1.gain'] = torch.zeros(3)
    path = _save(state, tmp_path / 'c.pth')
    backbone = _tiny_backbone()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    with pytest.raises(PretrainedKeysError) as info:
        StrictPretrained(path, prefix='backbone')(backbone)
    # refused before loading anything
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, before[key]), key
    message = str(info.value)
    assert "'backbone.')" in message and 'strict=False' in message
    assert '1 unexpected: stages.9.0.conv1.weight' in message
    assert '1 with another shape: stem.conv1.gain [3] (model: [8])' in message
    assert 'missing' not in message


def test_non_strict_logs_problems_and_loads_the_rest(tmp_path, tiny_state):
    state = dict(tiny_state)
    del state['backbone.stem.conv2.weight']
    path = _save(state, tmp_path / 'c.pth')
    backbone = _tiny_backbone()
    before = backbone.stem.conv2.weight.clone()

    records = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        StrictPretrained(path, prefix='backbone.', strict=False)(backbone)
    finally:
        logger.removeHandler(handler)
    assert any('stem.conv2.weight' in r.getMessage() for r in records)
    assert torch.equal(backbone.stem.conv2.weight, before)
    expected = _backbone_keys(state)
    for key, value in backbone.state_dict().items():
        if key != 'stem.conv2.weight':
            assert torch.equal(value, expected[key]), key


def test_ddp_prefixed_checkpoint_loads_as_pretrained_does(
        tmp_path, tiny_state):
    state = {
        f'module.{k[9:]}': v
        for k, v in tiny_state.items() if k.startswith('backbone.')
    }
    backbone = _tiny_backbone()
    StrictPretrained(_save(state, tmp_path / 'c.pth'))(backbone)
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, state[f'module.{key}']), key


def test_wrong_prefix_names_the_prefixes_present(tmp_path, tiny_state):
    path = _save(tiny_state, tmp_path / 'c.pth')
    backbone = _tiny_backbone()
    with pytest.raises(
            PretrainedKeysError,
            match=r"prefix 'model\.'.*\['backbone\.', 'head\.'\]"):
        StrictPretrained(path, prefix='model')(backbone)


def test_mmengine_pretrained_does_not_fail_on_missing_keys(
        tmp_path, tiny_state):
    """Why StrictPretrained exists: MMEngine's Pretrained goes on silently."""
    state = dict(tiny_state)
    del state['backbone.stem.conv2.weight']
    path = _save(state, tmp_path / 'c.pth')
    backbone = _tiny_backbone(
        init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    before = backbone.stem.conv2.weight.clone()
    backbone.init_weights()  # no error
    assert torch.equal(backbone.stem.conv2.weight, before)


def test_strict_pretrained_resolves_from_every_scope():
    """Registered in MMEngine's root: plain name works under any scope."""
    _need_mmdet()
    from mmdet.registry import WEIGHT_INITIALIZERS as DET
    from mmengine.registry import WEIGHT_INITIALIZERS as ROOT
    from mmpretrain.registry import WEIGHT_INITIALIZERS as PRETRAIN
    for registry in (ROOT, DET, PRETRAIN):
        assert registry.get('StrictPretrained') is StrictPretrained
    with pytest.raises(ValueError, match='checkpoint path'):
        StrictPretrained('')


def test_loaded_weights_survive_the_childrens_own_init(tmp_path):
    """BaseModule runs non-'Pretrained' initializers before the children's
    init_weights; the children must not overwrite what was loaded."""
    from mmengine.model import BaseModule

    class Child(BaseModule):

        def __init__(self):
            super().__init__(
                init_cfg=dict(type='Constant', layer='Linear', val=0.))
            self.fc = torch.nn.Linear(3, 2)

    class Parent(BaseModule):

        def __init__(self, init_cfg=None):
            super().__init__(init_cfg=init_cfg)
            self.child = Child()

    gen = torch.Generator().manual_seed(0)
    state = {
        'child.fc.weight': torch.randn(2, 3, generator=gen),
        'child.fc.bias': torch.randn(2, generator=gen)
    }
    path = _save(state, tmp_path / 'c.pth')
    model = Parent(init_cfg=dict(type='StrictPretrained', checkpoint=path))
    model.init_weights()
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    # without a pretrained init the child's own Constant(0) init applies
    plain = Parent()
    plain.init_weights()
    assert plain.child.fc.weight.abs().sum() == 0

"""UPerNet with our NFNet backbone in MMSegmentation, built from our config."""
import pytest
import torch
from helpers import (F0_CHANNELS, TINY_ARCH, TINY_CHANNELS,
                     check_backbone_config, check_backbone_grads,
                     load_downstream_config)

pytest.importorskip(
    'mmseg',
    reason='MMSegmentation 1.2.2 is not installed (the `downstream` '
    'extra: pip install -e ".[downstream]")')
pytest.importorskip(
    'mmseg.models',
    reason='mmseg.models cannot be imported here (needs mmcv '
    'ops and ftfy)',
    exc_type=ImportError)

from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402

from nfnet_mm.models.backbones import NFNet  # noqa: E402

CONFIG = 'upernet_nfnet-f0_4xb4-160k_ade20k-512x512.py'


@pytest.fixture(autouse=True)
def mmseg_scope():
    """Build and run under the MMSeg scope, as its runner would; restore
    after."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


NUM_CLASSES = 4


def _tiny_upernet(frozen_stages: int = -1):
    from mmseg.registry import MODELS
    cfg = load_downstream_config(CONFIG)
    check_backbone_config(cfg)
    assert cfg.model.decode_head.in_channels == F0_CHANNELS
    assert cfg.model.auxiliary_head.in_channels == F0_CHANNELS[2]
    model_cfg = cfg.model
    model_cfg.backbone.update(
        arch=TINY_ARCH, init_cfg=None, frozen_stages=frozen_stages)
    model_cfg.data_preprocessor.size = (128, 160)
    model_cfg.decode_head.update(
        in_channels=TINY_CHANNELS, channels=16, num_classes=NUM_CLASSES)
    model_cfg.auxiliary_head.update(
        in_channels=TINY_CHANNELS[2], channels=8, num_classes=NUM_CLASSES)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def _seg_batch(shape, with_gt: bool):
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(
            torch.randint(
                0, 256, (3, ) + shape, generator=gen, dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=shape, ori_shape=shape))
        if with_gt:
            sample.gt_sem_seg = PixelData(
                data=torch.randint(
                    0, NUM_CLASSES, (1, ) + shape, generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.slow
def test_upernet_nfnet_loss_backward_predict():
    torch.manual_seed(0)
    model = _tiny_upernet()
    assert isinstance(model.backbone, NFNet)
    assert model.backbone.out_channels == TINY_CHANNELS

    # multi-scale features at strides 4, 8, 16, 32
    model.train()
    data = model.data_preprocessor(_seg_batch((128, 160), True), True)
    feats = model.backbone(data['inputs'])
    assert [tuple(f.shape)
            for f in feats] == [(2, c, 128 // s, 160 // s)
                                for c, s in zip(TINY_CHANNELS, (4, 8, 16, 32))]

    losses = model(**data, mode='loss')
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    check_backbone_grads(model.backbone, frozen_stages=-1)

    # predict at another size, not a multiple of 32
    model.eval()
    shape = (150, 190)
    data = model.data_preprocessor(_seg_batch(shape, False), False)
    with torch.no_grad():
        results = model(**data, mode='predict')
    assert len(results) == 2
    for result in results:
        assert tuple(result.pred_sem_seg.data.shape) == (1, ) + shape
        assert tuple(result.seg_logits.data.shape) == (NUM_CLASSES, ) + shape
        assert 0 <= int(result.pred_sem_seg.data.min())
        assert int(result.pred_sem_seg.data.max()) < NUM_CLASSES


@pytest.mark.slow
def test_upernet_nfnet_frozen_stages():
    model = _tiny_upernet(frozen_stages=2)
    model.train()
    data = model.data_preprocessor(_seg_batch((128, 128), True), True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    check_backbone_grads(model.backbone, frozen_stages=2)

"""RetinaNet and Faster R-CNN (FPN) with our NFNet backbone in MMDetection."""
import pytest
import torch
from helpers import (F0_CHANNELS, TINY_ARCH, TINY_CHANNELS,
                     check_backbone_config, check_backbone_grads,
                     load_downstream_config)

pytest.importorskip(
    'mmdet',
    reason='MMDetection 3.3.0 is not installed (the `downstream` '
    'extra: pip install -e ".[downstream]")')
pytest.importorskip(
    'mmdet.models',
    reason='mmdet.models cannot be imported here (needs mmcv '
    'ops)',
    exc_type=ImportError)

from mmengine.registry import DefaultScope  # noqa: E402

from nfnet_mm.models.backbones import NFNet  # noqa: E402

NUM_CLASSES = 3


@pytest.fixture(autouse=True)
def mmdet_scope():
    """Build and run under the MMDet scope, as its runner would; restore
    after."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


WIDTH = 32  # neck / head channels, small for CPU


def _shrink_retinanet(model_cfg) -> None:
    model_cfg.bbox_head.update(
        num_classes=NUM_CLASSES,
        in_channels=WIDTH,
        feat_channels=WIDTH,
        stacked_convs=1)
    # keep low-score boxes so that NMS really runs on a random-init model
    model_cfg.test_cfg.update(score_thr=0., nms_pre=100, max_per_img=20)


def _shrink_faster_rcnn(model_cfg) -> None:
    model_cfg.rpn_head.update(in_channels=WIDTH, feat_channels=WIDTH)
    roi_head = model_cfg.roi_head
    roi_head.bbox_roi_extractor.out_channels = WIDTH
    roi_head.bbox_head.update(
        in_channels=WIDTH, fc_out_channels=64, num_classes=NUM_CLASSES)
    model_cfg.train_cfg.rpn_proposal.max_per_img = 200
    model_cfg.train_cfg.rcnn.sampler.num = 64
    model_cfg.test_cfg.rpn.max_per_img = 100
    model_cfg.test_cfg.rcnn.score_thr = 0.


DETECTORS = {
    'retinanet_nfnet-f0_fpn_1x_coco.py':
    ('RetinaNet', _shrink_retinanet, {'loss_cls', 'loss_bbox'}),
    'faster-rcnn_nfnet-f0_fpn_1x_coco.py':
    ('FasterRCNN', _shrink_faster_rcnn,
     {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox'}),
}


def _tiny_detector(config: str):
    from mmdet.registry import MODELS
    cfg = load_downstream_config(config)
    check_backbone_config(cfg)
    assert cfg.model.neck.in_channels == F0_CHANNELS
    model_cfg = cfg.model
    model_cfg.backbone.update(arch=TINY_ARCH, init_cfg=None)
    model_cfg.neck.update(in_channels=TINY_CHANNELS, out_channels=WIDTH)
    DETECTORS[config][1](model_cfg)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model, cfg.model.backbone.frozen_stages


@pytest.mark.slow
@pytest.mark.parametrize('config', sorted(DETECTORS))
def test_detector_nfnet_loss_backward_predict(config):
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(0)
    model, frozen_stages = _tiny_detector(config)
    assert type(model).__name__ == DETECTORS[config][0]
    assert isinstance(model.backbone, NFNet)
    assert frozen_stages == 1
    assert model.backbone.frozen_stages == 1

    model.train()
    packed = demo_mm_inputs(
        batch_size=2,
        image_shapes=[(3, 128, 160), (3, 160, 128)],
        num_items=[3, 2],
        num_classes=NUM_CLASSES)
    data = model.data_preprocessor(packed, True)
    assert tuple(data['inputs'].shape) == (2, 3, 160, 160)
    feats = model.backbone(data['inputs'])
    assert [tuple(f.shape)
            for f in feats] == [(2, c, 160 // s, 160 // s)
                                for c, s in zip(TINY_CHANNELS, (4, 8, 16, 32))]

    losses = model(**data, mode='loss')
    assert DETECTORS[config][2] <= set(losses)
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    check_backbone_grads(model.backbone, frozen_stages=1)

    model.eval()
    packed = demo_mm_inputs(
        batch_size=1, image_shapes=(3, 200, 256), num_classes=NUM_CLASSES)
    data = model.data_preprocessor(packed, False)
    with torch.no_grad():
        results = model(**data, mode='predict')
    assert len(results) == 1
    pred = results[0].pred_instances
    n = len(pred)
    assert 0 < n <= 100
    assert tuple(pred.bboxes.shape) == (n, 4)
    assert torch.isfinite(pred.bboxes).all()
    assert ((pred.labels >= 0) & (pred.labels < NUM_CLASSES)).all()
    # sorted by score, as NMS / top-k return them
    assert (pred.scores[:-1] >= pred.scores[1:]).all()

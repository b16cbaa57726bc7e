"""The test-only ``mmcv._ext`` stand-in computes what mmcv's kernels compute.

nms is checked against a plain greedy NMS written here, RoIAlign's forward
against torchvision and its backward against finite differences
(``gradcheck``). Skipped when full mmcv (the real kernels) is installed.
"""
import sys

import pytest
import torch

pytest.importorskip('mmcv', reason='mmcv is not installed')
ops = pytest.importorskip(
    'mmcv.ops', reason='mmcv.ops cannot be imported', exc_type=ImportError)
if not getattr(sys.modules.get('mmcv._ext'), 'IS_STANDIN', False):
    pytest.skip(
        'full mmcv installed: real kernels, no stand-in',
        allow_module_level=True)


def _greedy_nms(boxes, scores, thr, offset):
    """Textbook greedy NMS with mmcv's +offset pixel convention."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        ok = True
        for j in keep:
            x1 = max(boxes[i][0], boxes[j][0])
            y1 = max(boxes[i][1], boxes[j][1])
            x2 = min(boxes[i][2], boxes[j][2])
            y2 = min(boxes[i][3], boxes[j][3])
            inter = max(0., x2 - x1 + offset) * max(0., y2 - y1 + offset)
            area_i = (boxes[i][2] - boxes[i][0] + offset) * (
                boxes[i][3] - boxes[i][1] + offset)
            area_j = (boxes[j][2] - boxes[j][0] + offset) * (
                boxes[j][3] - boxes[j][1] + offset)
            if inter / (area_i + area_j - inter) > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize('offset', [0, 1])
def test_nms_matches_greedy_nms(offset):
    gen = torch.Generator().manual_seed(offset)
    xy = torch.rand(60, 2, generator=gen) * 40
    wh = torch.rand(60, 2, generator=gen) * 20 + 1
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.rand(60, generator=gen)
    dets, inds = ops.nms(boxes, scores, iou_threshold=0.3, offset=offset)
    expected = _greedy_nms(boxes.tolist(), scores.tolist(), 0.3, offset)
    assert inds.tolist() == expected
    assert torch.equal(dets[:, :4], boxes[inds])
    assert torch.equal(dets[:, 4], scores[inds])
    assert len(expected) < 60  # some boxes were suppressed


def test_roi_align_forward_and_backward():
    import torchvision
    gen = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 3, 9, 11, generator=gen, dtype=torch.float64)
    rois = torch.tensor([[0, 1.3, 0.7, 8.2, 6.9], [1, 0., 2.5, 5.5, 8.],
                         [1, 3.1, 1.2, 20., 9.5]],
                        dtype=torch.float64)
    layer = ops.RoIAlign((3, 4),
                         spatial_scale=0.8,
                         sampling_ratio=2,
                         aligned=True)
    out = layer(feat, rois)
    ref = torchvision.ops.roi_align(
        feat, rois, (3, 4), spatial_scale=0.8, sampling_ratio=2, aligned=True)
    assert torch.allclose(out, ref)

    feat.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: layer(x, rois), (feat, ))


def test_other_ops_raise_a_clear_error():
    with pytest.raises(
            NotImplementedError,
            match="'roi_pool_forward'.*"
            'stand-in.*full mmcv'):
        ops.roi_pool(torch.zeros(1, 1, 4, 4), torch.zeros(1, 5), 2)
    with pytest.raises(NotImplementedError, match='pool_mode="max"'):
        ops.RoIAlign(
            2, pool_mode='max')(torch.zeros(1, 1, 4, 4),
                                torch.tensor([[0., 0, 0, 2, 2]]))


def test_standin_is_not_shipped():
    """The stand-in lives in tests/ only; the package has no such module."""
    import os.path as osp
    import pkgutil

    import nfnet_mm
    standin_dir = osp.dirname(sys.modules['mmcv._ext'].__file__)
    assert osp.samefile(standin_dir, osp.dirname(osp.abspath(__file__)))
    names = [
        m.name for m in pkgutil.walk_packages(nfnet_mm.__path__, 'nfnet_mm.')
    ]
    assert 'nfnet_mm.models.utils.strict_pretrained' in names
    assert not any('standin' in n or n.endswith('_ext') for n in names)

"""TEST-ONLY stand-in for ``mmcv._ext``, the compiled op library of full mmcv.

mmcv-lite 2.1.0 ships the Python side of ``mmcv.ops`` but not the compiled
``mmcv._ext``, so ``import mmcv.ops`` (and with it ``mmdet.models`` and
``mmseg.models``) fails with ``No module named 'mmcv._ext'``. Every
``mmcv.ops`` module fetches its kernels with
``mmcv.utils.ext_loader.load_ext('_ext', [names])``, which imports
``mmcv._ext`` and checks ``hasattr`` for each name. This module answers that:

* ``nms`` is routed to :func:`torchvision.ops.nms` (RPN proposals, RetinaNet
  and Faster R-CNN post-processing);
* ``roi_align_forward`` / ``roi_align_backward`` (average mode) are routed to
  :func:`torchvision.ops.roi_align` (Faster R-CNN's RoI extractor);
* every other kernel name resolves to a function that raises
  ``NotImplementedError`` naming the op, so a model that needs it fails loudly
  instead of computing something wrong.

It is injected by ``tests/test_downstream/conftest.py`` only when the real
``mmcv._ext`` cannot be imported. It must never be shipped in the
``nfnet_mm`` package: real users install full mmcv (see docs/downstream.md).
"""
from typing import Callable

import torch
import torchvision

__all__ = ['nms', 'roi_align_forward', 'roi_align_backward']

IS_STANDIN = True


def nms(bboxes: torch.Tensor,
        scores: torch.Tensor,
        iou_threshold: float,
        offset: int = 0) -> torch.Tensor:
    """mmcv's ``nms`` kernel: kept indices, highest score first.

    ``offset=1`` (legacy pixel convention, ``w = x2 - x1 + 1``) is the same
    as plain NMS on boxes whose far corner is moved by one pixel.
    """
    if offset not in (0, 1):
        raise ValueError(f'nms offset must be 0 or 1, got {offset!r}')
    if bboxes.numel() == 0:
        return bboxes.new_zeros(0, dtype=torch.long)
    boxes = bboxes[:, :4].float()
    if offset:
        boxes = torch.cat([boxes[:, :2], boxes[:, 2:] + offset], dim=1)
    return torchvision.ops.nms(boxes, scores.float(), float(iou_threshold))


def _check_avg(pool_mode: int) -> None:
    if pool_mode != 1:
        raise NotImplementedError(
            'mmcv._ext test stand-in: roi_align with pool_mode="max" is not '
            'available (torchvision only averages); install full mmcv.')


def roi_align_forward(input: torch.Tensor, rois: torch.Tensor,
                      output: torch.Tensor, argmax_y: torch.Tensor,
                      argmax_x: torch.Tensor, aligned_height: int,
                      aligned_width: int, spatial_scale: float,
                      sampling_ratio: int, pool_mode: int,
                      aligned: bool) -> None:
    """mmcv's ``roi_align_forward`` kernel: fills ``output`` in place."""
    _check_avg(pool_mode)
    output.copy_(
        torchvision.ops.roi_align(
            input,
            rois, (aligned_height, aligned_width),
            spatial_scale=spatial_scale,
            sampling_ratio=sampling_ratio if sampling_ratio > 0 else -1,
            aligned=aligned))


def roi_align_backward(grad_output: torch.Tensor, rois: torch.Tensor,
                       argmax_y: torch.Tensor, argmax_x: torch.Tensor,
                       grad_input: torch.Tensor, aligned_height: int,
                       aligned_width: int, spatial_scale: float,
                       sampling_ratio: int, pool_mode: int,
                       aligned: bool) -> None:
    """mmcv's ``roi_align_backward`` kernel: fills ``grad_input`` in place.

    Average RoIAlign is linear in its input, so its input gradient does not
    depend on the input values: it is the vector-Jacobian product of
    torchvision's RoIAlign evaluated at any input of the right shape.
    """
    _check_avg(pool_mode)
    with torch.enable_grad():
        probe = grad_input.new_zeros(grad_input.shape, requires_grad=True)
        out = torchvision.ops.roi_align(
            probe,
            rois, (aligned_height, aligned_width),
            spatial_scale=spatial_scale,
            sampling_ratio=sampling_ratio if sampling_ratio > 0 else -1,
            aligned=aligned)
        (grad, ) = torch.autograd.grad(out, probe, grad_output)
    grad_input.copy_(grad)


def _unavailable(name: str) -> Callable:

    def op(*args, **kwargs):
        raise NotImplementedError(
            f'mmcv op {name!r} is not available: this is the test stand-in '
            'for mmcv._ext (mmcv-lite has no compiled ops; only nms and '
            'average RoIAlign are routed to torchvision). Install full mmcv '
            '2.1.0 to use it (see docs/downstream.md).')

    op.__name__ = name
    return op


def __getattr__(name: str) -> Callable:
    # Only kernel-like names: dunder lookups (e.g. by copy or pickle) and
    # private names must keep raising AttributeError.
    if name.startswith('_'):
        raise AttributeError(name)
    return _unavailable(name)

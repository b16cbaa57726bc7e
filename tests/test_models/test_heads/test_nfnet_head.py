"""Tests of NFNetClsHead."""
import pytest
import torch
import torch.nn as nn
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import nfnet_mm  # noqa: F401


def build(**kwargs):
    cfg = dict(type='NFNetClsHead', num_classes=1000, in_channels=3072)
    cfg.update(kwargs)
    return MODELS.build(cfg)


@pytest.mark.parametrize('call_init_weights', [False, True])
def test_init_normal_001_zero_bias(call_init_weights):
    torch.manual_seed(0)
    head = build()
    if call_init_weights:
        head.init_weights()
    assert isinstance(head.fc, nn.Linear) and head.fc.bias is not None
    w = head.fc.weight.detach()
    # 3M samples: the sample std of N(0, 0.01) is within 1% of 0.01
    assert abs(w.std().item() - 0.01) < 1e-4
    assert abs(w.mean().item()) < 1e-4
    assert torch.count_nonzero(head.fc.bias) == 0


def test_dropout():
    head = build(num_classes=5, in_channels=16, dropout_rate=0.5)
    assert head.dropout.p == 0.5
    x = torch.randn(64, 16)
    head.eval()
    torch.testing.assert_close(head((x, )), head.fc(x))
    head.train()
    torch.manual_seed(0)
    assert not torch.allclose(head((x, )), head.fc(x))
    assert build(dropout_rate=0.).dropout is None
    with pytest.raises(ValueError, match='dropout_rate'):
        build(dropout_rate=1.5)


def test_fp32_logits_and_loss_under_bf16_autocast():
    torch.manual_seed(0)
    head = build(num_classes=5, in_channels=16, dropout_rate=0.2)
    x = torch.randn(4, 16)
    samples = [DataSample().set_gt_label(i) for i in (0, 1, 2, 4)]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        raw = head.fc(x)
        logits = head((x, ))
        losses = head.loss((x, ), samples)
    assert raw.dtype == torch.bfloat16  # autocast really was active
    assert logits.dtype == torch.float32
    assert losses['loss'].dtype == torch.float32
    assert torch.isfinite(losses['loss'])
    preds = head.predict((x, ))
    assert len(preds) == 4 and preds[0].pred_score.shape == (5, )

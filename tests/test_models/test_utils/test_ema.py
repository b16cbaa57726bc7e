"""NFNetEMA: decay_t = min(decay, (1 + t) / (10 + t)), t = update index."""
import copy

import pytest
import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

import nfnet_mm  # noqa: F401
from nfnet_mm.models.utils.ema import NFNetEMA


def _paper_decay(t, decay):
    # the paper / DeepMind's tf1_ema: t = 0 at the first update
    return min(decay, (1.0 + t) / (10.0 + t))


def test_registered_and_momentum_convention():
    ema = MODELS.build(dict(type='NFNetEMA', model=nn.Linear(2, 2)))
    assert isinstance(ema, NFNetEMA)
    # MMEngine's momentum is 1 - decay: paper decay 0.99999
    assert ema.momentum == pytest.approx(1e-5)
    assert ema.decay == pytest.approx(0.99999)
    with pytest.raises(ValueError, match='momentum'):
        NFNetEMA(nn.Linear(2, 2), momentum=1.5)
    # the decay written where 1 - decay belongs would track the raw weights
    with pytest.raises(ValueError, match='momentum=1e-5, got 0.99999'):
        NFNetEMA(nn.Linear(2, 2), momentum=0.99999)


@pytest.mark.parametrize('momentum', [1e-5, 0.05])
def test_decay_sequence_and_averaged_params(momentum):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    ema = NFNetEMA(model, momentum=momentum)
    decay = 1.0 - momentum
    expected = None
    for t in range(40):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        src = [p.detach().clone() for p in model.parameters()]
        assert ema.decay_at(t) == pytest.approx(_paper_decay(t, decay))
        ema.update_parameters(model)
        if expected is None:
            # t = 0: MMEngine copies the weights (the EMA copy is taken
            # before the weights are initialised)
            expected = src
        else:
            d = _paper_decay(t, decay)
            expected = [d * e + (1 - d) * s for e, s in zip(expected, src)]
        for e, p in zip(expected, ema.module.parameters()):
            torch.testing.assert_close(p, e, rtol=1e-5, atol=1e-6)
    # the warm-up dominates early: (1 + 1) / (10 + 1) at t = 1, cap later
    assert ema.decay_at(1) == pytest.approx(2 / 11)
    assert ema.decay_at(10**7) == pytest.approx(
        min(decay, (1 + 1e7) / (10 + 1e7)))


def test_without_warmup_is_plain_ema():
    model = nn.Linear(2, 2)
    ema = NFNetEMA(model, momentum=0.1, warmup=False)
    assert ema.decay_at(0) == pytest.approx(0.9)
    ema.update_parameters(model)
    before = copy.deepcopy(ema.module.weight.detach())
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update_parameters(model)
    torch.testing.assert_close(ema.module.weight,
                               0.9 * before + 0.1 * model.weight.detach())

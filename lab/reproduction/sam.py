"""The SAM arms of the reproduction (the paper's appendix A.4).

``ascent`` is ``'full'`` (the whole batch), a fraction such as ``'0.2'``
(its first 20%, the paper's cheap ascent) or ``'other'``: the first 20% of
the *previous* iteration's batch, the paper's negative control (same cost as
``'0.2'``, different samples). The step time is measured against a plain step
of the same model and batch, interleaved (:func:`step_time_ratio`).
"""
import itertools

import torch
from mmengine.optim import OptimWrapper

from lab.benchmarks.harness import Runner, paired_ratio, time_interleaved
from nfnet_mm.models.classifiers import SAMImageClassifier
from nfnet_mm.models.utils.sam_train_step import (is_sam_optim_wrapper,
                                                  sam_train_step)

__all__ = [
    'ASCENTS', 'OtherBatchSAMClassifier', 'sam_optim_wrapper',
    'step_time_ratio'
]

#: The arms: no SAM, the whole batch, 20% of it, 20% of another batch.
ASCENTS = ('none', 'full', '0.2', 'other')
OTHER_FRACTION = 0.2


class OtherBatchSAMClassifier(SAMImageClassifier):
    """SAM whose ascent runs on the previous training batch, not this one.

    Ascent at ``w`` on the first ``ascent_size(B)`` samples of the previous
    batch (this batch at the first step), descent on this whole batch at
    ``w + e``, then ``w`` is restored (``sam_train_step``'s ``ascent_data``).
    """

    def train_step(self, data, optim_wrapper: OptimWrapper):
        if not is_sam_optim_wrapper(optim_wrapper):
            return super().train_step(data, optim_wrapper)
        previous, self._previous = getattr(self, '_previous', None), data
        return sam_train_step(self, data, optim_wrapper, ascent_data=previous)


def sam_optim_wrapper(ascent: str, optimizer: dict, rho: float = 0.05) -> dict:
    """The optimizer-wrapper config of one ascent arm (AGC off)."""
    if ascent not in ASCENTS:
        raise ValueError(f'ascent must be one of {ASCENTS}, got {ascent!r}')
    if ascent == 'none':
        return dict(type='AGCOptimWrapper', agc=None, optimizer=optimizer)
    fraction = {'full': 1., '0.2': 0.2, 'other': OTHER_FRACTION}[ascent]
    return dict(
        type='SAMOptimWrapper',
        rho=rho,
        ascent_fraction=fraction,
        optimizer=optimizer)


def step_time_ratio(model: torch.nn.Module,
                    optim_wrapper: OptimWrapper,
                    batches: list,
                    steps: int = 8,
                    warmup: int = 2) -> float:
    """This arm's train step time over a plain step (same model, batches and
    learning rate, no AGC, no SAM), interleaved in this process: the median
    of the paired ratios. The weights move: call it after testing."""
    plain = OptimWrapper(
        torch.optim.SGD(
            model.parameters(),
            lr=optim_wrapper.get_lr()['lr'][0],
            momentum=0.9,
            nesterov=True))
    model.train()

    def runner(name, wrapper):
        data = itertools.cycle(batches)
        return Runner(name, lambda: model.train_step(next(data), wrapper))

    runners = [runner('plain', plain), runner('arm', optim_wrapper)]
    time_interleaved(runners, warmup, steps, next(model.parameters()).device)
    if any(r.error for r in runners):
        raise RuntimeError(f'step timing failed: {[r.error for r in runners]}')
    return round(paired_ratio(runners[1].times, runners[0].times), 3)

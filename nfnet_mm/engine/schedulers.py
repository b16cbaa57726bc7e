"""Warm-up and cosine schedules that follow the run's length.

The NFNet recipe (paper, Appendix A): a linear warm-up, then a cosine decay to
0 at the end of training, both per iteration. Written with MMEngine's
``LinearLR`` and ``CosineAnnealingLR`` and a fixed ``end``/``T_max``, the
cosine stops where the config said even when ``max_epochs`` changes (the
configs omit both: MMEngine's Runner then ends the cosine with the run), and a
fractional-epoch warm-up converts to ``int(epochs x iterations per epoch)`` = 0
iterations on a short epoch (MMEngine then fails with
``end should be larger than begin``). These two subclasses change only that:

- an epoch-based warm-up lasts at least two iterations (the first at
  ``start_factor``, the second at the peak), and the cosine begins where the
  warm-up ends;
- a run that ends before its warm-up does is one error naming both lengths.

At lengths where the warm-up has at least two iterations, the iterations are
exactly MMEngine's.
"""
from mmengine.optim import CosineAnnealingLR, LinearLR
from mmengine.optim.scheduler.param_scheduler import INF
from mmpretrain.registry import PARAM_SCHEDULERS

__all__ = ['WarmupLR', 'CosineAfterWarmupLR']


def _iters(epochs: float, epoch_length: int, floor: int = 0) -> int:
    """Iterations in ``epochs`` as MMEngine counts them; a positive length >=
    floor."""
    if epochs == INF:
        return INF
    return max(int(epochs * epoch_length), floor) if epochs > 0 else 0


@PARAM_SCHEDULERS.register_module()
class WarmupLR(LinearLR):
    """MMEngine's ``LinearLR``; from epochs, at least two iterations long."""

    @classmethod
    def build_iter_from_epoch(cls,
                              *args,
                              begin=0,
                              end=INF,
                              by_epoch=True,
                              epoch_length=None,
                              **kwargs):
        return cls(
            *args,
            begin=_iters(begin, epoch_length),
            end=_iters(end, epoch_length, 2),
            by_epoch=False,
            **kwargs)


@PARAM_SCHEDULERS.register_module()
class CosineAfterWarmupLR(CosineAnnealingLR):
    """MMEngine's ``CosineAnnealingLR`` from the warm-up's end to the run's
    end.

    Give ``begin`` (the warm-up's ``end``, in the same unit) and leave ``end``
    and ``T_max`` out, so that they follow ``max_epochs``/``max_iters``.
    """

    def __init__(self, optimizer, begin: int = 0, end: int = INF, **kwargs):
        if end <= begin:
            unit = 'epoch' if kwargs.get('by_epoch', True) else 'iteration'
            raise ValueError(
                f'The run ends at {unit} {end}, before the cosine schedule '
                'can '
                f'begin after the warm-up ({unit} {begin}): train longer '
                '(train_cfg.max_epochs/max_iters, a larger dataset) or '
                'shorten '
                "the warm-up (param_scheduler[0]['end']).")
        super().__init__(optimizer, begin=begin, end=end, **kwargs)

    @classmethod
    def build_iter_from_epoch(cls,
                              *args,
                              T_max=None,
                              begin=0,
                              end=INF,
                              by_epoch=True,
                              epoch_length=None,
                              **kwargs):
        return cls(
            *args,
            T_max=T_max and T_max * epoch_length,
            begin=_iters(begin, epoch_length, 2),
            end=_iters(end, epoch_length),
            by_epoch=False,
            **kwargs)

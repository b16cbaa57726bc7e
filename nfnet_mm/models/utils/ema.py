"""The EMA of parameters with the paper's warm-up (Brock et al., 2021, App. A).

The paper keeps an exponential moving average of the weights with decay
0.99999 and a warm-up::

    decay_t = min(decay, (1 + t) / (10 + t))

:class:`NFNetEMA` is an MMEngine averaged model, so it plugs into MMPretrain's
``EMAHook``, which evaluates on the EMA weights and stores both sets of
weights in checkpoints::

    custom_hooks = [
        dict(type='EMAHook', ema_type='NFNetEMA', momentum=1e-5,
             evaluate_on_ema=True, evaluate_on_origin=False,
             priority='ABOVE_NORMAL')
    ]
"""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseTTAModel, ExponentialMovingAverage
from mmpretrain.registry import MODELS
from torch import Tensor

__all__ = ['NFNetEMA']


@MODELS.register_module()
class NFNetEMA(ExponentialMovingAverage):
    r"""EMA of parameters with the NFNet warm-up of the decay.

    Follows MMEngine's convention: ``momentum`` is the weight of the *new*
    value, i.e. ``momentum = 1 - decay``; the paper's decay 0.99999 is
    ``momentum=1e-5``. At the update with index ``t``

    .. math::

        d_t = \min\left(1 - \text{momentum}, \frac{1 + t}{10 + t}\right),
        \qquad \bar\theta \leftarrow d_t \bar\theta + (1 - d_t) \theta

    where ``t`` is MMEngine's ``steps`` counter: the number of times
    :meth:`update_parameters` has been called before this call, so the
    first update has ``t = 0`` as in the reference (``global_step`` starts at
    0). At ``t = 0`` MMEngine copies the weights instead of averaging: its
    ``EMAHook`` deep-copies the model *before* the weights are initialised,
    so the copy does not hold the initial weights that the reference mixes
    in with factor 0.1. From ``t = 1`` on the update is the reference's.
    The difference (the reference's EMA still holds
    :math:`\prod_{j<t} d_j` of the initial weights, 9!·t!/(t+9)!) vanishes
    within a few hundred steps.

    With ``interval > 1`` the EMA is updated every ``interval`` calls and
    ``t`` still counts calls.

    Args:
        model (nn.Module): The model to average.
        momentum (float): ``1 - decay``. Defaults to 1e-5 (decay 0.99999).
        interval (int): Update the EMA every ``interval`` calls.
            Defaults to 1.
        device (torch.device, optional): Where to keep the EMA weights.
            Defaults to None (same device as ``model``).
        update_buffers (bool): Whether to average the buffers too (NFNets
            have none). Defaults to False.
        warmup (bool): Whether to use the warm-up ``(1 + t) / (10 + t)``.
            Defaults to True.
    """

    def __init__(self,
                 model: nn.Module,
                 momentum: float = 1e-5,
                 interval: int = 1,
                 device: Optional[torch.device] = None,
                 update_buffers: bool = False,
                 warmup: bool = True) -> None:
        # MMEngine's EMAHook hands over the model it tests; under test-time
        # augmentation that is the TTA wrapper (no model wrapper to MMEngine),
        # whose ``module`` holds the weights that checkpoints key as
        # ``module.<name>`` in ``ema_state_dict``. Averaging the wrapper would
        # key them ``module.module.<name>``: the hook's non-strict load would
        # then load nothing and TTA test the initial weights.
        if isinstance(model, BaseTTAModel):
            model = model.module
        # 0.99999 here would track the raw weights
        if not 0.0 < momentum <= 0.5:
            raise ValueError(
                'NFNetEMA: momentum (= 1 - decay) must be in (0, 0.5]; the '
                f"paper's decay 0.99999 is momentum=1e-5, got {momentum}.")
        super().__init__(
            model,
            momentum=momentum,
            interval=interval,
            device=device,
            update_buffers=update_buffers)
        self.warmup = warmup

    @property
    def decay(self) -> float:
        """float: The target decay, ``1 - momentum``."""
        return 1.0 - self.momentum

    def decay_at(self, t: int) -> float:
        """The decay used at the update with index ``t``.

        Args:
            t (int): The update index (MMEngine's ``steps`` before the
                update), starting at 0.

        Returns:
            float: ``min(decay, (1 + t) / (10 + t))`` with warm-up, else
            ``decay``.
        """
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + t) / (10.0 + t))

    def avg_func(self, averaged_param: Tensor, source_param: Tensor,
                 steps: int) -> None:
        """Average one parameter in place.

        Args:
            averaged_param (Tensor): The EMA parameter.
            source_param (Tensor): The current parameter.
            steps (int): The update index ``t``.
        """
        decay = self.decay_at(int(steps))
        averaged_param.lerp_(source_param, 1.0 - decay)

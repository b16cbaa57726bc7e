"""The EMA of parameters with the paper's warm-up (Brock et al., 2021, App. A).

Use it as ``dict(type='EMAHook', ema_type='NFNetEMA', momentum=1e-5, ...)``.
"""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseTTAModel, ExponentialMovingAverage
from mmpretrain.registry import MODELS
from torch import Tensor

from nfnet_mm.utils.sharding import refuse_sharded

__all__ = ['NFNetEMA']


@MODELS.register_module()
class NFNetEMA(ExponentialMovingAverage):
    r"""EMA of parameters with the NFNet warm-up of the decay.

    ``momentum`` is MMEngine's, ``1 - decay`` (the paper's 0.99999 is
    ``momentum=1e-5``). Update ``t`` (MMEngine's ``steps``, from 0) uses
    :math:`d_t = \min(1 - \text{momentum}, (1 + t) / (10 + t))`. Unlike the
    reference, update 0 copies the weights (MMEngine) instead of mixing in the
    initial ones; the difference vanishes within a few hundred steps. A model
    with FSDP-sharded parameters is refused.

    Args:
        model (nn.Module): The model to average.
        momentum (float): ``1 - decay``. Defaults to 1e-5 (decay 0.99999).
        interval (int): Update every ``interval`` calls (``t`` counts calls).
            Defaults to 1.
        device (torch.device, optional): Where to keep the EMA weights.
            Defaults to None (same device as ``model``).
        update_buffers (bool): Average the buffers too. Defaults to False.
        warmup (bool): Use the warm-up ``(1 + t) / (10 + t)``.
            Defaults to True.
    """

    def __init__(self,
                 model: nn.Module,
                 momentum: float = 1e-5,
                 interval: int = 1,
                 device: Optional[torch.device] = None,
                 update_buffers: bool = False,
                 warmup: bool = True) -> None:
        # average a TTA wrapper's module, or checkpoint keys would not match
        if isinstance(model, BaseTTAModel):
            model = model.module
        if not 0.0 < momentum <= 0.5:
            raise ValueError(
                'NFNetEMA: momentum (= 1 - decay) must be in (0, 0.5]; the '
                f"paper's decay 0.99999 is momentum=1e-5, got {momentum}.")
        refuse_sharded(model.named_parameters(), 'NFNetEMA')  # before copying
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
        """The decay used at the update with index ``t`` (from 0)."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + t) / (10.0 + t))

    def avg_func(self, averaged_param: Tensor, source_param: Tensor,
                 steps: int) -> None:
        """Average one parameter in place (``steps`` is ``t``)."""
        decay = self.decay_at(int(steps))
        averaged_param.lerp_(source_param, 1.0 - decay)

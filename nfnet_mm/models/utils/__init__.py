from .ema import NFNetEMA
from .sam_train_step import (SAMTrainStepMixin, is_sam_optim_wrapper,
                             sam_train_step)
from .strict_pretrained import PretrainedKeysError, StrictPretrained

__all__ = [
    'NFNetEMA', 'SAMTrainStepMixin', 'is_sam_optim_wrapper', 'sam_train_step',
    'PretrainedKeysError', 'StrictPretrained'
]

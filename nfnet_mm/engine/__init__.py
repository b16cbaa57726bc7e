from .model_wrappers import SAMDistributedDataParallel
from .optimizers import (AGCOptimWrapper, AmpAGCOptimWrapper,
                         AmpSAMOptimWrapper, SAMOptimWrapper,
                         amp_optim_wrapper_type, unitwise_clip_)

__all__ = [
    'SAMDistributedDataParallel', 'AGCOptimWrapper', 'AmpAGCOptimWrapper',
    'AmpSAMOptimWrapper', 'SAMOptimWrapper', 'amp_optim_wrapper_type',
    'unitwise_clip_'
]

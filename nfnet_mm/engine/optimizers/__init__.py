from .agc import AGCOptimWrapper, AmpAGCOptimWrapper, unitwise_clip_
from .amp import amp_optim_wrapper_type
from .sam import AmpSAMOptimWrapper, SAMOptimWrapper

__all__ = [
    'AGCOptimWrapper', 'AmpAGCOptimWrapper', 'unitwise_clip_',
    'amp_optim_wrapper_type', 'AmpSAMOptimWrapper', 'SAMOptimWrapper'
]

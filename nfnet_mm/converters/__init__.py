"""Weight converters (DeepMind's Haiku files, timm's NF models) to our keys.

Not imported by ``import nfnet_mm``; CLIs in ``tools/model_converters/``."""
from .common import ConversionError, check_converted, infer_arch
from .deepmind import convert_deepmind_file, convert_deepmind_params
from .timm import (TIMM_MODELS, convert_timm_file, convert_timm_state_dict,
                   timm_model_cfg)

__all__ = [
    'ConversionError', 'check_converted', 'infer_arch',
    'convert_deepmind_file', 'convert_deepmind_params', 'convert_timm_file',
    'convert_timm_state_dict', 'TIMM_MODELS', 'timm_model_cfg'
]

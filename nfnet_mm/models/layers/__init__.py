from .activation import (ACTIVATION_GAMMAS, build_plain_act,
                         get_activation_gamma)
from .ws_conv import ScaledWSConv2d, same_pads, standardize_weight

__all__ = [
    'ACTIVATION_GAMMAS', 'build_plain_act', 'get_activation_gamma',
    'ScaledWSConv2d', 'same_pads', 'standardize_weight'
]

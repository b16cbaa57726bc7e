from .nfnet import (EfficientChannelAttention, NFBlock, NFNet, NFRegNet,
                    NFResNet, SqueezeExcite, StochasticDepth)

__all__ = [
    'EfficientChannelAttention', 'NFBlock', 'NFNet', 'NFRegNet', 'NFResNet',
    'SqueezeExcite', 'StochasticDepth'
]

from .backbones import (EfficientChannelAttention, NFBlock, NFNet, NFRegNet,
                        NFResNet, SqueezeExcite, StochasticDepth)
from .classifiers import SAMImageClassifier
from .heads import NFNetClsHead
from .layers import ScaledWSConv2d
from .utils import (NFNetEMA, PretrainedKeysError, StrictPretrained,
                    sam_train_step)

__all__ = [
    'EfficientChannelAttention', 'NFBlock', 'NFNet', 'NFRegNet', 'NFResNet',
    'SqueezeExcite', 'StochasticDepth',
    'SAMImageClassifier', 'NFNetClsHead', 'ScaledWSConv2d', 'NFNetEMA',
    'PretrainedKeysError', 'StrictPretrained', 'sam_train_step'
]

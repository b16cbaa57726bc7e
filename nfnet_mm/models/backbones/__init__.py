from .nfnet import NFBlock, NFNet, SqueezeExcite, StochasticDepth

__all__ = ['NFBlock', 'NFNet', 'SqueezeExcite', 'StochasticDepth']

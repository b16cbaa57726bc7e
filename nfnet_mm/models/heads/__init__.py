from .nfnet_head import NFNetClsHead

__all__ = ['NFNetClsHead']

"""Adaptive Gradient Clipping (paper eq. 3) as optimizer wrappers."""

__all__ = []

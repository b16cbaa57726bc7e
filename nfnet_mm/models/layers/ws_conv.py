"""Scaled weight-standardised convolution (paper eq. 1)."""

__all__ = []

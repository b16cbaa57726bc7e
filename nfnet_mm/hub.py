"""Registers nfnet_mm's model index with MMPretrain's ModelHub."""

__all__ = []

"""Sharpness-Aware Minimization optimizer wrapper."""

__all__ = []

"""Activations with the variance-preserving gain gamma."""

__all__ = []

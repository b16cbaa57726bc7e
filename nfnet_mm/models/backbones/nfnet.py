"""The NFNet backbone."""

__all__ = []

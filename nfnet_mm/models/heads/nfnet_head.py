"""The NFNet classification head."""

__all__ = []

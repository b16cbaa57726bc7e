"""The EMA with the paper's warm-up."""

__all__ = []

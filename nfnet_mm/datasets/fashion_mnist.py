"""Fashion-MNIST read from local idx .gz files."""

__all__ = []

"""Safe checkpoint loading (weights_only allow-list) and atomic checkpoint saving."""

__all__ = []

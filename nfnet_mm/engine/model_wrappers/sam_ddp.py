"""DDP model wrapper that runs the SAM two-pass train step."""

__all__ = []

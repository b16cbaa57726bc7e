"""A classifier whose train step runs the SAM two-pass update."""

__all__ = []

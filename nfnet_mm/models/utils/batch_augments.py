"""Half-MixUp / half-CutMix batch augment."""

__all__ = []

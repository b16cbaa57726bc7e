"""RandAugment with DeepMind's op set and magnitude scale."""

__all__ = []

from .randaugment import (NFPosterize, NFRandAugment, NFTranslate,
                          nf_randaug_policies)

__all__ = [
    'NFPosterize', 'NFRandAugment', 'NFTranslate', 'nf_randaug_policies'
]

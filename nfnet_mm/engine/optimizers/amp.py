"""Which optimizer wrapper ``--amp`` switches a config to.

MMPretrain's ``tools/train.py --amp`` replaces any wrapper type with
``AmpOptimWrapper``, silently dropping AGC or SAM. A wrapper of ours names its
AMP variant in the class attribute ``amp_variant`` instead.
"""
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS

__all__ = ['amp_optim_wrapper_type']


def amp_optim_wrapper_type(type_name: str) -> str:
    """The AMP variant of a wrapper type: ``OptimWrapper`` ->
    ``AmpOptimWrapper``, an AMP wrapper -> itself, ours -> its ``amp_variant``;
    else a ``ValueError``."""
    cls = OPTIM_WRAPPERS.get(type_name)
    known = sorted(  # what --amp can switch, for the errors
        name for registry in (OPTIM_WRAPPERS, OPTIM_WRAPPERS.parent)
        for name, c in registry.module_dict.items()
        if c is OptimWrapper or getattr(c, 'amp_variant', None))
    if cls is None:
        raise ValueError(
            f'Unknown optim_wrapper type {type_name!r}; types --amp '
            f'can switch: {known}')
    if issubclass(cls, AmpOptimWrapper):
        return type_name
    if cls is OptimWrapper:
        return 'AmpOptimWrapper'
    if getattr(cls, 'amp_variant', None) is None:
        raise ValueError(
            f'--amp cannot switch optim_wrapper type {type_name!r}: it names '
            'no '
            'AMP variant (class attribute `amp_variant`). Types it can '
            'switch: '
            f'{known}; or set an AMP wrapper in the config yourself.')
    return cls.amp_variant

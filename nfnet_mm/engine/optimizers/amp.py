"""Which optimizer wrapper ``--amp`` switches a config to.

MMPretrain's ``tools/train.py --amp`` replaces any wrapper type with
``AmpOptimWrapper``, silently dropping AGC or SAM. A wrapper of ours names its AMP
variant in the class attribute ``amp_variant`` instead.
"""
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS

__all__ = ['amp_optim_wrapper_type']


def amp_optim_wrapper_type(type_name: str) -> str:
    """The registered name of the AMP variant of an optimizer wrapper type.

    ``OptimWrapper`` maps to ``AmpOptimWrapper``, an AMP wrapper to itself, a
    wrapper of ours to its ``amp_variant``.

    Raises:
        ValueError: If the type is unknown or has no AMP variant.
    """
    cls = OPTIM_WRAPPERS.get(type_name)
    if cls is None:
        raise ValueError(f'Unknown optim_wrapper type {type_name!r}')
    if issubclass(cls, AmpOptimWrapper):
        return type_name
    if cls is OptimWrapper:
        return 'AmpOptimWrapper'
    if getattr(cls, 'amp_variant', None) is None:
        known = sorted(
            name for registry in (OPTIM_WRAPPERS, OPTIM_WRAPPERS.parent)
            for name, c in registry.module_dict.items()
            if c is OptimWrapper or getattr(c, 'amp_variant', None))
        raise ValueError(
            f'--amp cannot switch optim_wrapper type {type_name!r}: it names no '
            f'AMP variant (class attribute `amp_variant`). Types it can switch: '
            f'{known}; or set an AMP wrapper in the config yourself.')
    return cls.amp_variant

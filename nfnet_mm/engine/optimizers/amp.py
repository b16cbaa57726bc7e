"""Which optimizer wrapper ``--amp`` switches a config to.

MMPretrain's ``--amp`` would drop AGC or SAM; our wrappers name their AMP
variant in the class attribute ``amp_variant``.
"""
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS

__all__ = ['amp_optim_wrapper_type']


def amp_optim_wrapper_type(type_name: str) -> str:
    """The AMP variant of the optimizer wrapper type ``type_name``.

    ``OptimWrapper`` -> ``AmpOptimWrapper``, AMP ones -> themselves, ours ->
    their ``amp_variant``; else a ``ValueError``.
    """
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
            'no AMP variant (class attribute `amp_variant`). Types it can '
            f'switch: {known}; or set an AMP wrapper in the config yourself.')
    return cls.amp_variant

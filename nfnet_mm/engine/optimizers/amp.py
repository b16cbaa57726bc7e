"""Which optimizer wrapper ``--amp`` switches a config to.

MMPretrain's ``tools/train.py --amp`` overwrites any optimizer wrapper type with
``AmpOptimWrapper``, silently dropping a custom wrapper such as AGC. We instead ask the
wrapper class for its AMP variant: a wrapper of ours names it in the class attribute
``amp_variant``; MMEngine's plain ``OptimWrapper`` maps to ``AmpOptimWrapper``; a wrapper
that already is an AMP wrapper stays as it is; anything else is an error.
"""
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS

__all__ = ['amp_optim_wrapper_type']


def _registered_wrappers() -> dict:
    """All optimizer wrappers visible from MMPretrain's registry (and its parents)."""
    found, registry = {}, OPTIM_WRAPPERS
    while registry is not None:
        for name, cls in registry.module_dict.items():
            found.setdefault(name, cls)
        registry = registry.parent
    return found


def amp_optim_wrapper_type(type_name: str) -> str:
    """Return the registered name of the AMP variant of an optimizer wrapper.

    Args:
        type_name (str): The ``type`` of an ``optim_wrapper`` config.

    Returns:
        str: The type to use under automatic mixed precision.

    Raises:
        ValueError: If the type is unknown or has no AMP variant.
    """
    cls = OPTIM_WRAPPERS.get(type_name)
    if cls is None:
        raise ValueError(
            f'Unknown optim_wrapper type {type_name!r}; registered types are: '
            f'{sorted(_registered_wrappers())}')
    if issubclass(cls, AmpOptimWrapper):
        return type_name
    variant = getattr(cls, 'amp_variant', None)
    if variant is None and cls is OptimWrapper:
        variant = 'AmpOptimWrapper'
    if variant is None:
        known = sorted(
            name for name, c in _registered_wrappers().items()
            if c is OptimWrapper or getattr(c, 'amp_variant', None))
        raise ValueError(
            f'--amp cannot switch optim_wrapper type {type_name!r}: it names no AMP '
            f'variant (class attribute `amp_variant`). Types that can be switched: '
            f'{known}; or set an AMP wrapper in the config yourself.')
    return variant

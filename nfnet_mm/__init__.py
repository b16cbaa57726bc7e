"""nfnet_mm: NFNets (Brock et al., ICML 2021) for OpenMMLab.

Importing this package registers our modules into MMPretrain's registries
(``mmpretrain.registry``; ``StrictPretrained`` into MMEngine's root initializer
registry, our model index into MMPretrain's ``ModelHub``), so that a config
with ``custom_imports=dict(imports=['nfnet_mm'])`` can select them by name. It
changes nothing else: the host workarounds in :mod:`nfnet_mm.compat` are
opt-in (:func:`enable_safe_checkpoints`, or
``'nfnet_mm.compat.safe_checkpoints'`` in a config's ``custom_imports``).
"""
from . import datasets, engine, hub, models  # noqa: F401 (registration)
from .compat import enable_safe_checkpoints
from .version import __version__

__all__ = ['__version__', 'enable_safe_checkpoints']

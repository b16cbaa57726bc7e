"""nfnet_mm: NFNets (Brock et al., ICML 2021) for OpenMMLab.

Importing this package registers every module of ours into MMPretrain's
registries (``mmpretrain.registry``; ``StrictPretrained`` into MMEngine's root
initializer registry, our model index into MMPretrain's ``ModelHub``), so that a config with
``custom_imports=dict(imports=['nfnet_mm'])`` can select them by name. It changes
nothing else; the checkpoint fixes are opt-in: :func:`enable_safe_checkpoints`, or
``'nfnet_mm.safe_checkpoints'`` in a config's ``custom_imports``.
"""
from .version import __version__
from . import datasets, engine, models, utils  # noqa: F401
from . import hub  # noqa: F401
from .utils.checkpoint import enable_safe_checkpoints

__all__ = ['__version__', 'enable_safe_checkpoints']

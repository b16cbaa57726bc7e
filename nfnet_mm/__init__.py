"""nfnet_mm: NFNets (Brock et al., ICML 2021) for OpenMMLab.

Importing this package registers every module of ours into MMPretrain's
registries (``mmpretrain.registry``), so that a config with
``custom_imports=dict(imports=['nfnet_mm'])`` can select them by name.
"""
from .version import __version__
from . import utils  # noqa: F401  (checkpoint safety first)
from . import datasets, engine, models  # noqa: F401,E402
from . import hub  # noqa: F401,E402

__all__ = ['__version__']

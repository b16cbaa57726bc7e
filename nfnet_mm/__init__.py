"""nfnet_mm: NFNets (Brock et al., ICML 2021) for OpenMMLab.

Importing it only registers our modules; :mod:`nfnet_mm.compat` is opt-in."""
from . import datasets, engine, hub, models  # noqa: F401 (registration)
from .compat import enable_safe_checkpoints
from .version import __version__

__all__ = ['__version__', 'enable_safe_checkpoints']

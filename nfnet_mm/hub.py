"""Registers nfnet_mm's model index with MMPretrain's ModelHub on import.

Nothing is downloaded: ``get_model(..., pretrained=)`` needs a local path."""
import contextlib
import os
import os.path as osp
from typing import Optional

__all__ = ['find_model_index', 'register_nfnet_models']

_REGISTERED: Optional[str] = None


def find_model_index() -> Optional[str]:
    """The first ``model-index.yml`` of ``$NFNET_MM_MODEL_INDEX``, the
    repository root and ``nfnet_mm/.mim`` (installs), or None."""
    pkg_dir = osp.dirname(osp.abspath(__file__))
    candidates = [
        os.environ.get('NFNET_MM_MODEL_INDEX'),
        osp.join(osp.dirname(pkg_dir), 'model-index.yml'),
        osp.join(pkg_dir, '.mim', 'model-index.yml'),
    ]
    for path in candidates:
        if path and osp.isfile(path):
            return path
    return None


def register_nfnet_models(model_index: Optional[str] = None) -> str:
    """Register our models with :class:`mmpretrain.apis.ModelHub` (idempotent).

    Args:
        model_index (str, optional): Defaults to :func:`find_model_index`.
    """
    global _REGISTERED
    path = model_index or find_model_index()
    if path is None:
        raise FileNotFoundError(
            'nfnet_mm: model-index.yml not found (looked at '
            '$NFNET_MM_MODEL_INDEX, the repository root and nfnet_mm/.mim); '
            'mmpretrain.get_model() will not know the NFNet names. Config '
            'files still work.')
    path = osp.abspath(path)
    if _REGISTERED != path:
        from mmpretrain.apis.model import ModelHub

        # config paths in the index are relative to the index's folder
        ModelHub.register_model_index(path, config_prefix=osp.dirname(path))
        _REGISTERED = path
    return path


with contextlib.suppress(FileNotFoundError):
    register_nfnet_models()

"""Registers nfnet_mm's model index with MMPretrain's ModelHub.

Importing :mod:`nfnet_mm` calls :func:`register_nfnet_models`, after which
MMPretrain's APIs know our model names::

    >>> import nfnet_mm
    >>> from mmpretrain import get_model, list_models
    >>> list_models('nfnet*')
    >>> model = get_model('nfnet-f0_3rdparty_in1k',
    ...                   pretrained='checkpoints/nfnet-f0_in1k.pth')

No weights are downloaded: ``pretrained`` must be a local path (our metafile
lists no download links).

The index is searched in order: ``$NFNET_MM_MODEL_INDEX`` (a
``model-index.yml`` path), the repository root above the package (an
editable install or a source checkout), then ``nfnet_mm/.mim/model-index.yml``
(where a wheel or a non-editable install ships it together with
``configs/``: ``setup.py`` copies both there at build time, as OpenMMLab
packages do). When none is found, the import registers nothing and says
nothing; :func:`register_nfnet_models` called by hand says why.
"""
import contextlib
import os
import os.path as osp
from typing import Optional

__all__ = ['find_model_index', 'register_nfnet_models']

_REGISTERED: Optional[str] = None


def find_model_index() -> Optional[str]:
    """The path of nfnet_mm's ``model-index.yml``, or None if not found.

    Returns:
        str | None: The first existing candidate (see the module docstring).
    """
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
    """Register our models with :class:`mmpretrain.apis.ModelHub`.

    Safe to call more than once with the same index.

    Args:
        model_index (str, optional): A ``model-index.yml``. Defaults to
            :func:`find_model_index`.

    Raises:
        FileNotFoundError: No index was found (importing ``nfnet_mm`` then
            registers nothing, quietly; config files still work).
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

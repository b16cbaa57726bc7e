"""MMEngine's ``Pretrained`` initializer, failing on any key it cannot load.

``type='Pretrained'`` loads with ``strict=False``: a missing, unexpected or
misshaped key is one warning among the training logs, and the run goes on
with random weights there. ``type='StrictPretrained'`` loads the same way
(:class:`~mmengine.model.PretrainedInit`'s checkpoint and ``prefix``
handling) but first compares keys and shapes with the module
(:func:`~nfnet_mm.utils.checkpoint.check_state_dict`) and raises one error
naming the problems.

It is registered in MMEngine's root ``WEIGHT_INITIALIZERS`` on purpose:
``BaseModule.init_weights`` builds initializers from the root registry under
whatever default scope is current (``mmpretrain``, ``mmdet``, ``mmseg`` or
none), and a root entry is found by its plain name from all of them.
"""
from collections.abc import Mapping

import torch.nn as nn
from mmengine.model import BaseModule, PretrainedInit
from mmengine.model.weight_init import update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS
from mmengine.runner.checkpoint import (_load_checkpoint,
                                        _load_checkpoint_with_prefix,
                                        load_state_dict)

from ...utils.checkpoint import (CheckpointMismatchError, check_state_dict,
                                 strip_prefix)

__all__ = ['StrictPretrained', 'PretrainedKeysError']


class PretrainedKeysError(CheckpointMismatchError, RuntimeError):
    """The checkpoint does not match the module it should initialise."""


@WEIGHT_INITIALIZERS.register_module()
class StrictPretrained(PretrainedInit):
    """``Pretrained`` that raises one error naming every key it cannot load.

    Usage in a config (for a backbone taken from a classifier checkpoint)::

        init_cfg=dict(type='StrictPretrained', checkpoint='nfnet-f0.pth',
                      prefix='backbone.')

    Args:
        checkpoint (str): Checkpoint path or URL (anything MMEngine's
            ``CheckpointLoader`` reads). Its ``'state_dict'`` entry is used
            if it has one, else the checkpoint itself.
        prefix (str, optional): Only keys starting with this prefix are used,
            with the prefix removed (a missing trailing ``'.'`` is added).
            Defaults to None (all keys).
        map_location (str): Passed to the loader. Defaults to ``'cpu'``.
        strict (bool): Raise :class:`PretrainedKeysError` if any key of the
            module is missing from the checkpoint, any checkpoint key is
            unknown to the module, or any shape differs. If False, behave as
            ``Pretrained``: load the matching tensors and log the rest.
            Defaults to True.
    """

    def __init__(self,
                 checkpoint: str,
                 prefix: str = None,
                 map_location: str = 'cpu',
                 strict: bool = True) -> None:
        if not isinstance(checkpoint, str) or not checkpoint:
            raise ValueError('StrictPretrained needs a checkpoint path or '
                             f'URL, got {checkpoint!r}.')
        if prefix is not None and not prefix.endswith('.'):
            prefix += '.'
        super().__init__(checkpoint, prefix, map_location)
        self.strict = strict

    def _load(self) -> Mapping:
        if self.prefix is not None:
            try:
                return _load_checkpoint_with_prefix(self.prefix,
                                                    self.checkpoint,
                                                    self.map_location)
            except AssertionError:  # no key has the prefix: name those there
                ckpt = _load_checkpoint(self.checkpoint, self.map_location)
                heads = sorted({
                    k.split('.', 1)[0] + '.'
                    for k in ckpt.get('state_dict', ckpt)
                })
                raise PretrainedKeysError(
                    f'No key of checkpoint {self.checkpoint!r} starts with '
                    f'prefix {self.prefix!r}; its top-level prefixes are '
                    f'{heads}.') from None
        ckpt = _load_checkpoint(self.checkpoint, self.map_location, 'current')
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt,
                                                           Mapping) else ckpt
        if not isinstance(state, Mapping):
            raise TypeError(
                f'Checkpoint {self.checkpoint!r} holds a {type(state)}, not a '
                'state dict (or a dict with a "state_dict" entry).')
        # as Pretrained's load_checkpoint (revise_keys): DDP's prefix goes
        return strip_prefix(state)

    def __call__(self, module: nn.Module) -> None:
        """Load the checkpoint into ``module``.

        Raises:
            PretrainedKeysError: If ``strict`` and the keys or shapes differ,
                or if no checkpoint key has ``prefix``.
        """
        source = self._load()
        if self.strict:
            prefix = f' (prefix {self.prefix!r})' if self.prefix else ''
            check_state_dict(
                module.state_dict(), source,
                f'Checkpoint {self.checkpoint!r}{prefix}',
                'Fix the checkpoint or the prefix, or pass strict=False to '
                'load the matching tensors only.', PretrainedKeysError)
        # MMEngine's loader (as Pretrained): skips and logs what does not fit
        load_state_dict(module, source, strict=False, logger='current')
        # BaseModule runs the children's init_weights after every initializer
        # but Pretrained itself: keep them from overwriting the loaded weights.
        for sub in module.modules():
            if sub is not module and isinstance(sub, BaseModule):
                sub._is_init = True
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

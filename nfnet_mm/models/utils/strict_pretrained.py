"""MMEngine's ``Pretrained`` initializer, failing on any key it cannot load.

Registered in the root ``WEIGHT_INITIALIZERS``: found under every scope.
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

    Args:
        checkpoint (str): Checkpoint path or URL (its ``'state_dict'`` if any).
        prefix (str, optional): Use only the keys with this prefix, removed
            (``'.'`` appended if missing). Defaults to None (all keys).
        map_location (str): Passed to the loader. Defaults to ``'cpu'``.
        strict (bool): Raise :class:`PretrainedKeysError` on missing,
            unexpected or misshaped keys; else behave as ``Pretrained``.
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
            except AssertionError:  # no key has the prefix
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
        # as Pretrained's revise_keys: drop DDP's prefix
        return strip_prefix(state)

    def __call__(self, module: nn.Module) -> None:
        """Load the checkpoint into ``module``."""
        source = self._load()
        if self.strict:
            prefix = f' (prefix {self.prefix!r})' if self.prefix else ''
            check_state_dict(
                module.state_dict(), source,
                f'Checkpoint {self.checkpoint!r}{prefix}',
                'Fix the checkpoint or the prefix, or pass strict=False to '
                'load the matching tensors only.', PretrainedKeysError)
        load_state_dict(module, source, strict=False, logger='current')
        # keep the children's init_weights from overwriting the loaded weights
        for sub in module.modules():
            if sub is not module and isinstance(sub, BaseModule):
                sub._is_init = True
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

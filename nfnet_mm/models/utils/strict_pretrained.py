"""A pretrained-weights initializer that reports every key it does not load.

MMEngine's ``type='Pretrained'`` initializer loads with ``strict=False``: a
missing, unexpected or wrongly shaped key is only printed as a warning among
the training logs, and the run goes on with randomly initialised weights.
``type='StrictPretrained'`` loads the same way (optionally the sub-dict under
a ``prefix`` such as ``'backbone.'`` of a classifier checkpoint) but compares
the keys and shapes with the module first and, by default, raises one error
listing every problem.

It is registered in MMEngine's root ``WEIGHT_INITIALIZERS`` (not in
MMPretrain's child registry) on purpose: ``BaseModule.init_weights`` builds
initializers from the root registry under whatever default scope is current
(``mmpretrain``, ``mmdet``, ``mmseg`` or none), and a root entry is found by
its plain name from all of them.
"""
import logging
from collections.abc import Mapping
from typing import Dict, List, Optional, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['StrictPretrained', 'PretrainedKeysError']


class PretrainedKeysError(RuntimeError):
    """The checkpoint does not match the module it should initialise."""


@WEIGHT_INITIALIZERS.register_module()
class StrictPretrained:
    """Initialise a module from a checkpoint, reporting key mismatches.

    Usage in a config (for a backbone taken from a classifier checkpoint)::

        init_cfg=dict(type='StrictPretrained', checkpoint='nfnet-f0.pth',
                      prefix='backbone.')

    The checkpoint is read through MMEngine's ``CheckpointLoader`` (local
    paths, URLs, ``open-mmlab://``...; with ``nfnet_mm`` imported, local files
    are read with ``weights_only=True``). If it has a ``'state_dict'`` entry,
    that is used, else the checkpoint itself.

    Args:
        checkpoint (str): Checkpoint path or URL.
        prefix (str, optional): Only keys starting with this prefix are used,
            with the prefix removed (a missing trailing ``'.'`` is added).
            Defaults to None (all keys).
        map_location (str): Passed to the loader. Defaults to ``'cpu'``.
        strict (bool): Raise :class:`PretrainedKeysError` if any key of the
            module is missing from the checkpoint, any checkpoint key is
            unknown to the module, or any shape differs. If False, the
            problems are logged as a warning and the matching tensors are
            loaded. Defaults to True.
    """

    def __init__(self,
                 checkpoint: str,
                 prefix: Optional[str] = None,
                 map_location: str = 'cpu',
                 strict: bool = True) -> None:
        if not isinstance(checkpoint, str) or not checkpoint:
            raise ValueError(
                f'StrictPretrained needs a checkpoint path or URL, got '
                f'{checkpoint!r}.')
        if prefix is not None and not prefix.endswith('.'):
            prefix += '.'
        self.checkpoint = checkpoint
        self.prefix = prefix
        self.map_location = map_location
        self.strict = strict

    def _source_state_dict(self) -> Dict[str, object]:
        ckpt = CheckpointLoader.load_checkpoint(
            self.checkpoint, map_location=self.map_location, logger='current')
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt,
                                                            Mapping) else ckpt
        if not isinstance(state, Mapping):
            raise TypeError(
                f'Checkpoint {self.checkpoint!r} holds a {type(state)}, not a '
                'state dict (or a dict with a "state_dict" entry).')
        if self.prefix is None:
            return dict(state)
        n = len(self.prefix)
        sub = {k[n:]: v for k, v in state.items() if k.startswith(self.prefix)}
        if not sub:
            heads = sorted({k.split('.', 1)[0] + '.' for k in state})
            raise PretrainedKeysError(
                f'No key of checkpoint {self.checkpoint!r} starts with prefix '
                f'{self.prefix!r}; its top-level prefixes are {heads}.')
        return sub

    @staticmethod
    def compare(module_state: Mapping, source: Mapping
                ) -> Tuple[List[str], List[str], List[str]]:
        """Keys missing from ``source``, unknown to the module, misshaped."""
        missing = sorted(set(module_state) - set(source))
        unexpected = sorted(set(source) - set(module_state))
        mismatched = [
            k for k in sorted(set(module_state) & set(source))
            if tuple(source[k].shape) != tuple(module_state[k].shape)
        ]
        return missing, unexpected, mismatched

    def __call__(self, module: nn.Module) -> None:
        """Load the checkpoint into ``module``.

        Args:
            module (nn.Module): The module whose ``init_cfg`` this is.

        Raises:
            PretrainedKeysError: If ``strict`` and the keys or shapes differ,
                or if no checkpoint key has ``prefix``.
        """
        source = self._source_state_dict()
        target = module.state_dict()
        missing, unexpected, mismatched = self.compare(target, source)
        where = f'checkpoint {self.checkpoint!r}'
        if self.prefix is not None:
            where += f' (prefix {self.prefix!r})'
        where += f' for {module.__class__.__name__}'
        if missing or unexpected or mismatched:
            shapes = [
                f'{k} (checkpoint {tuple(source[k].shape)}, module '
                f'{tuple(target[k].shape)})' for k in mismatched
            ]
            lines = [f'Pretrained weights do not match: {where}.']
            for title, keys in (('missing in the checkpoint', missing),
                                ('unexpected in the checkpoint', unexpected),
                                ('with a different shape', shapes)):
                if keys:
                    lines.append(f'{len(keys)} {title}: {", ".join(keys)}')
            if self.strict:
                lines.append('Fix the checkpoint or the prefix, or pass '
                             'strict=False to load the matching tensors only.')
                raise PretrainedKeysError('\n'.join(lines))
            print_log('\n'.join(lines), logger='current', level=logging.WARNING)
        bad = set(mismatched)
        loadable = {
            k: v
            for k, v in source.items() if k in target and k not in bad
        }
        module.load_state_dict(loadable, strict=False)
        print_log(
            f'Loaded {len(loadable)}/{len(target)} tensors from {where}.',
            logger='current')
        # Loaded weights are final: keep the children's own init_weights
        # (run after this initializer by BaseModule) from overwriting them.
        for sub in module.modules():
            if sub is not module and isinstance(sub, BaseModule):
                sub._is_init = True
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

    def _get_init_info(self) -> str:
        prefix = '' if self.prefix is None else f' (prefix {self.prefix!r})'
        return f'{self.__class__.__name__}: load from {self.checkpoint}{prefix}'

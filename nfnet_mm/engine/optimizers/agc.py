"""Adaptive Gradient Clipping (Brock et al. 2021, Section 4, eq. 3).

A unit is a row (dim 0) of a matrix or kernel; a scalar or vector is one unit.
See ``docs/agc.md``.
"""
import difflib
import logging
import math
from contextlib import contextmanager
from fnmatch import fnmatchcase
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS
from torch.optim import Optimizer

from nfnet_mm.utils.sharding import refuse_sharded

__all__ = ['AGCOptimWrapper', 'AmpAGCOptimWrapper', 'unitwise_clip_']


@torch.no_grad()
def unitwise_clip_(params: Sequence[torch.Tensor], clipping: float,
                   eps: float) -> torch.Tensor:
    """Apply eq. 3 to the ``.grad`` of ``params`` in place, without host syncs.

    Returns ``[grad_norm_sum, clip_frac, max_ratio]`` (float32; the ratio is
    taken before clipping).
    """
    whole = [p for p in params if p.ndim <= 1]
    rows = [p for p in params if p.ndim > 1]
    grad_norms = list(torch._foreach_norm([p.grad
                                           for p in whole])) if whole else []
    weight_norms = list(torch._foreach_norm(whole)) if whole else []
    for p in rows:
        dims = tuple(range(1, p.ndim))
        grad_norms.append(torch.linalg.vector_norm(p.grad, dim=dims))
        weight_norms.append(torch.linalg.vector_norm(p, dim=dims))
    g = torch.cat([n.reshape(-1).float() for n in grad_norms])
    w = torch.cat([n.reshape(-1).float()
                   for n in weight_norms]).clamp_min_(eps)
    ratio = g / w
    clipped = ratio > clipping
    scale = torch.where(clipped, clipping * w / g, torch.ones_like(g))
    scales = [
        s.view([-1] + [1] * (p.ndim - 1) if p.ndim > 1 else []).to(
            p.grad.dtype) for s, p in zip(
                scale.split([1] * len(whole) + [p.shape[0]
                                                for p in rows]), whole + rows)
    ]
    torch._foreach_mul_([p.grad for p in whole + rows], scales)
    return torch.stack([g.sum(), clipped.float().mean(), ratio.max()])


@OPTIM_WRAPPERS.register_module()
class AGCOptimWrapper(OptimWrapper):
    """Optimizer wrapper that applies AGC (eq. 3) before each update.

    AGC runs once per update, after gradient accumulation, DDP's all-reduce
    and AMP un-scaling, before ``clip_grad`` (if set). FSDP and multi-process
    ``ZeroRedundancyOptimizer`` are refused before the first update
    (:mod:`nfnet_mm.utils.sharding`). ``exclude`` is resolved
    by the first :meth:`optim_context` (or :meth:`bind_model`). A non-finite
    gradient skips the update (under fp16 the ``GradScaler`` skips instead).
    Logs ``train/agc_clip_frac`` and ``train/agc_max_ratio`` per update.

    Args:
        optimizer (Optimizer): The optimizer.
        agc (dict, optional): ``clipping`` (lambda, required), ``eps``
            (default 1e-3) and ``exclude`` (names or ``fnmatchcase`` patterns;
            default ``['head.fc.weight']``; ``[]`` clips all). None: a plain
            ``OptimWrapper``. Defaults to None.
        max_consecutive_skips (int): Skipped updates in a row that raise a
            ``RuntimeError``. Defaults to 10.
        **kwargs: Passed to ``OptimWrapper`` (``accumulative_counts``,
            ``clip_grad``).
    """

    amp_variant = 'AmpAGCOptimWrapper'

    def __init__(self,
                 optimizer: Optimizer,
                 agc: Optional[dict] = None,
                 max_consecutive_skips: int = 10,
                 **kwargs) -> None:
        super().__init__(optimizer=optimizer, **kwargs)
        if agc is not None:
            unknown = set(agc) - {'clipping', 'eps', 'exclude'}
            if unknown or 'clipping' not in agc:
                raise ValueError(
                    f'agc takes `clipping` (required), `eps` and `exclude`, '
                    f'got {agc!r}')
            agc = {'eps': 1e-3, 'exclude': ['head.fc.weight'], **agc}
            if not all(
                    isinstance(agc[k], (int, float))
                    and not isinstance(agc[k], bool) and agc[k] > 0
                    for k in ('clipping', 'eps')):
                raise ValueError(
                    f'agc clipping and eps must be > 0 (numbers), '
                    f'got {agc!r}')
            if not (isinstance(agc['exclude'], (list, tuple))
                    and all(isinstance(p, str) for p in agc['exclude'])):
                raise ValueError(
                    'agc exclude must be a list of parameter name '
                    f"patterns, got {agc['exclude']!r}")
        if not max_consecutive_skips >= 1:
            raise ValueError('max_consecutive_skips must be >= 1, got '
                             f'{max_consecutive_skips!r}')
        self.agc = agc
        self.max_consecutive_skips = max_consecutive_skips
        self.consecutive_skips = 0
        self.param_names: Optional[dict] = None  # id(param) -> name
        self._excluded: set = set()  # ids of the excluded parameters
        self._whole_checked = False  # the sharding refusal has run

    # step() calls _clip_grad() only if clip_grad_kwargs is set: AGC sets it
    @property
    def clip_grad_kwargs(self) -> Optional[dict]:
        return self._clip_grad_cfg or self.agc

    @clip_grad_kwargs.setter
    def clip_grad_kwargs(self, value: Optional[dict]) -> None:
        self._clip_grad_cfg = value

    def bind_model(self, model: nn.Module) -> None:
        """Name ``model``'s parameters (unwrapped) and resolve ``exclude``."""
        while is_model_wrapper(model) or hasattr(model, '_orig_mod'):
            model = model.module if is_model_wrapper(
                model) else model._orig_mod
        self.param_names = {id(p): n for n, p in model.named_parameters()}
        named = [(self.param_names[id(p)], id(p)) for p in self._params()
                 if id(p) in self.param_names]
        self._excluded = set()
        for pattern in (self.agc or {}).get('exclude', []):
            hits = {i for name, i in named if fnmatchcase(name, pattern)}
            if not hits:
                close = difflib.get_close_matches(pattern,
                                                  [n for n, _ in named])
                raise ValueError(
                    f'agc.exclude pattern {pattern!r} matches no parameter of '
                    f'the optimizer; closest names: {close}, last parameters: '
                    f'{[n for n, _ in named[-4:]]}. Use exclude=[] to clip '
                    'all.')
            self._excluded |= hits

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Bind parameter names on first use, then MMEngine's context."""
        if self.param_names is None:
            self.bind_model(model)
        with super().optim_context(model):
            yield

    def _params(self) -> List[torch.Tensor]:
        params = [p for g in self.optimizer.param_groups for p in g['params']]
        if not self._whole_checked and (self.agc is not None
                                        or hasattr(self, 'ascend')):
            names = self.param_names or {}
            refuse_sharded(((names.get(id(p), f'optimizer parameter {i}'), p)
                            for i, p in enumerate(params)),
                           type(self).__name__, self.optimizer)
            self._whole_checked = True
        return params

    def agc_clip_(self) -> Optional[torch.Tensor]:
        """Apply eq. 3; the stats of :func:`unitwise_clip_` or None if no grad.

        The excluded gradients count in ``grad_norm_sum`` but are not clipped.
        """
        if self.agc['exclude'] and self.param_names is None:
            raise RuntimeError(
                f'AGC excludes {self.agc["exclude"]} but knows no parameter '
                'names: call bind_model(model) before the first update.')
        grads = [p for p in self._params() if p.grad is not None]
        if not grads:
            return None
        clipped = [p for p in grads if id(p) not in self._excluded]
        excluded = [p.grad for p in grads if id(p) in self._excluded]
        stats = (
            unitwise_clip_(clipped, self.agc['clipping'], self.agc['eps'])
            if clipped else grads[0].new_zeros(3, dtype=torch.float32))
        if excluded:  # not clipped, but part of the finiteness check
            stats[0] += torch.stack(
                torch._foreach_norm(excluded)).float().sum()
        return stats

    def _clip_grad(self) -> None:
        """AGC, the skip of a non-finite update, then ``clip_grad``."""
        stats = self.agc_clip_() if self.agc is not None else None
        if stats is not None:
            grad_norm_sum, clip_frac, max_ratio = stats.tolist()
            if math.isfinite(grad_norm_sum):
                self.consecutive_skips = 0
                self.message_hub.update_scalar('train/agc_clip_frac',
                                               clip_frac)
                self.message_hub.update_scalar('train/agc_max_ratio',
                                               max_ratio)
            elif not (isinstance(self, AmpOptimWrapper) and
                      self.loss_scaler.is_enabled()):  # else the scaler skips
                self.optimizer.zero_grad(set_to_none=True)
                self.consecutive_skips += 1
                print_log(
                    f'{type(self).__name__}: non-finite gradient, update '
                    f'skipped ({self.consecutive_skips} in a row).',
                    logger='current',
                    level=logging.WARNING)
                if self.consecutive_skips >= self.max_consecutive_skips:
                    raise RuntimeError(
                        f'{self.consecutive_skips} consecutive updates had a '
                        'non-finite gradient: check the learning rate, the '
                        'data and the loss.')
                return
        if self._clip_grad_cfg:
            super()._clip_grad()


@OPTIM_WRAPPERS.register_module()
class AmpAGCOptimWrapper(AmpOptimWrapper, AGCOptimWrapper):
    """:class:`AGCOptimWrapper` under automatic mixed precision.

    Args:
        loss_scale (str or float or dict): ``'auto'``: dynamic for float16,
            none for bfloat16 (it has float32's range); else as in
            ``AmpOptimWrapper``. Defaults to ``'auto'``.
        dtype (str or torch.dtype, optional): Autocast dtype. Defaults to None
            (float16).
        **kwargs: Passed to ``AmpOptimWrapper`` and :class:`AGCOptimWrapper`.
    """

    def __init__(self, loss_scale='auto', dtype=None, **kwargs) -> None:
        if loss_scale == 'auto':
            is_bf16 = dtype in ('bfloat16', torch.bfloat16)
            loss_scale = dict(enabled=False) if is_bf16 else 'dynamic'
        super().__init__(loss_scale=loss_scale, dtype=dtype, **kwargs)

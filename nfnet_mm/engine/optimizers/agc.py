"""Adaptive Gradient Clipping (paper eq. 3) as optimizer wrappers.

Brock et al., "High-Performance Large-Scale Image Recognition Without
Normalization", ICML 2021, Section 4. For every unit ``i`` of a parameter ``W``
with gradient ``G``::

    ratio_i = ||G_i|| / max(||W_i||, eps)
    if ratio_i > clipping:  G_i <- G_i * clipping * max(||W_i||, eps) / ||G_i||

A unit is a row (``dim 0`` = output unit, the norm runs over all other dims) of a
matrix or convolution kernel; a scalar or a vector (biases, gains, skip gains) is a
single unit whose norm runs over the whole tensor. See ``docs/agc.md``.
"""
import difflib
import logging
from contextlib import contextmanager
from fnmatch import fnmatchcase
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import MessageHub, print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS
from torch.optim import Optimizer

__all__ = ['AGCOptimWrapper', 'AmpAGCOptimWrapper']

_AGC_KEYS = ('clipping', 'eps', 'exclude')
_DEFAULT_EXCLUDE = ('head.fc.weight', )


def _unwrap(model: nn.Module) -> nn.Module:
    """Strip DDP-like wrappers (``module.``) and ``torch.compile`` (``_orig_mod.``)."""
    while True:
        if is_model_wrapper(model) and hasattr(model, 'module'):
            model = model.module
        elif isinstance(getattr(model, '_orig_mod', None), nn.Module):
            model = model._orig_mod
        else:
            return model


class _ClipPlan:
    """The parameters AGC clips, split once into whole-tensor and row-wise units.

    Built on the first step and rebuilt only when the set of parameters that have a
    gradient changes. Holding the lists avoids re-deriving shapes every step.
    """

    def __init__(self, params: Sequence[torch.Tensor],
                 excluded: Sequence[torch.Tensor]):
        self.whole = [p for p in params if p.ndim <= 1]
        self.rows = [p for p in params if p.ndim >= 2]
        self.excluded = list(excluded)
        # the row-wise norm reduces over every dim but the first
        self.row_dims = [tuple(range(1, p.ndim)) for p in self.rows]
        self.params = self.whole + self.rows
        self.unit_counts = [1] * len(self.whole) + [p.shape[0] for p in self.rows]
        # a per-unit scale, viewed so that it broadcasts over its parameter
        self.scale_shapes = ([()] * len(self.whole) +
                             [(p.shape[0], ) + (1, ) * (p.ndim - 1)
                              for p in self.rows])
        self.num_units = sum(self.unit_counts)


@OPTIM_WRAPPERS.register_module()
class AGCOptimWrapper(OptimWrapper):
    """Optimizer wrapper applying Adaptive Gradient Clipping before each update.

    Clipping happens in :meth:`step`, i.e. once per parameter update: after
    gradient accumulation (MMEngine calls ``step`` only on update iterations),
    after DDP's all-reduce (done during ``backward``), and, in
    :class:`AmpAGCOptimWrapper`, after un-scaling the loss-scaled gradients.

    Parameter names (for ``exclude``) are taken from the model the first time the
    wrapper sees it: :meth:`initialize_count_status` (called by the Runner before
    training) or :meth:`optim_context` (called by ``train_step``); model wrappers'
    ``module.`` prefixes are stripped. Call :meth:`bind_model` when driving the
    wrapper by hand. Every ``exclude`` pattern must match a parameter; otherwise
    binding raises a ``ValueError`` naming the pattern, before any update.

    A non-finite gradient (NaN/Inf anywhere, detected from the norms AGC computes
    anyway) skips the update: weights and optimizer state stay untouched, the
    gradients are zeroed and a warning is logged. ``max_consecutive_skips``
    consecutive skips raise a ``RuntimeError``. Under fp16 loss scaling the
    ``GradScaler`` makes that decision instead (see :class:`AmpAGCOptimWrapper`).

    Per update, ``train/agc_clip_frac`` (fraction of clipped units) and
    ``train/agc_max_ratio`` (largest ``||G_i|| / max(||W_i||, eps)``, before
    clipping) are written to MMEngine's ``MessageHub``. Both come from the host
    read-back that the skip decision needs anyway: one device sync per update.

    Hook points for subclasses (e.g. SAM):

    - :meth:`clip_gradients` clips the current ``.grad`` tensors in place (AGC,
      then MMEngine's ``clip_grad`` if configured) and returns the statistics
      tensor; call it wherever a gradient must be clipped.
    - :meth:`step` = ``clip_gradients`` + :meth:`_apply_or_skip` (non-finite
      handling, logging, ``optimizer.step``). Override ``step`` and call these
      two to keep both behaviours.

    With ``agc=None`` the wrapper is exactly a plain :class:`OptimWrapper` (no
    clipping, no non-finite handling).

    Args:
        optimizer (Optimizer): The optimizer.
        agc (dict, optional): ``clipping`` (float, lambda, required), ``eps``
            (float, defaults to 1e-3) and ``exclude`` (list of str: parameter
            names or :func:`fnmatch.fnmatchcase` patterns such as
            ``'head.*.weight'``, matched against the full dotted name; defaults
            to ``['head.fc.weight']``, the classifier weight; ``[]`` clips every
            parameter). ``None`` disables AGC. Defaults to None.
        max_consecutive_skips (int): Number of consecutive updates skipped for
            a non-finite gradient after which training stops with a
            ``RuntimeError``. Defaults to 10.
        **kwargs: Passed to :class:`OptimWrapper` (``accumulative_counts``,
            ``clip_grad``). ``clip_grad`` is applied after AGC.

    Example:
        >>> optim_wrapper = dict(
        ...     type='AGCOptimWrapper',
        ...     optimizer=dict(type='SGD', lr=0.4, momentum=0.9, nesterov=True),
        ...     agc=dict(clipping=0.01, eps=1e-3, exclude=['head.fc.weight']))
    """

    amp_variant = 'AmpAGCOptimWrapper'

    def __init__(self,
                 optimizer: Optimizer,
                 agc: Optional[dict] = None,
                 max_consecutive_skips: int = 10,
                 **kwargs) -> None:
        super().__init__(optimizer=optimizer, **kwargs)
        self.agc_cfg = self._check_agc_cfg(agc)
        if (not isinstance(max_consecutive_skips, int)
                or isinstance(max_consecutive_skips, bool)
                or max_consecutive_skips < 1):
            raise ValueError('max_consecutive_skips must be an int >= 1, got '
                             f'{max_consecutive_skips!r}')
        self.max_consecutive_skips = max_consecutive_skips
        self.consecutive_skips = 0
        self.skipped_steps = 0
        self._param_names: Optional[Dict[int, str]] = None
        self._excluded_ids: Optional[set] = None
        self._plan: Optional[_ClipPlan] = None
        self._plan_key: Optional[Tuple[int, ...]] = None

    # ------------------------------------------------------------------ config
    @staticmethod
    def _check_agc_cfg(agc: Optional[dict]) -> Optional[dict]:
        if agc is None:
            return None
        if not isinstance(agc, dict):
            raise TypeError(f'agc must be a dict with keys {list(_AGC_KEYS)} or '
                            f'None, got {type(agc).__name__}: {agc!r}')
        unknown = sorted(set(agc) - set(_AGC_KEYS))
        if unknown:
            raise ValueError(f'Unknown agc keys {unknown}; valid keys are '
                             f'{list(_AGC_KEYS)}')
        if 'clipping' not in agc:
            raise ValueError('agc needs `clipping` (lambda of eq. 3, e.g. 0.01)')
        clipping, eps = agc['clipping'], agc.get('eps', 1e-3)
        for key, value in (('clipping', clipping), ('eps', eps)):
            if (not isinstance(value, (int, float)) or isinstance(value, bool)
                    or not value > 0):
                raise ValueError(
                    f'agc.{key} must be a positive number, got {value!r}')
        exclude = agc.get('exclude', _DEFAULT_EXCLUDE)
        if isinstance(exclude, str):
            exclude = [exclude]
        if (not isinstance(exclude, (list, tuple))
                or not all(isinstance(e, str) for e in exclude)):
            raise TypeError('agc.exclude must be a list of parameter names or '
                            f'fnmatch patterns, got {exclude!r}')
        return dict(
            clipping=float(clipping), eps=float(eps), exclude=list(exclude))

    @property
    def agc(self) -> Optional[dict]:
        """dict or None: the validated AGC settings (clipping, eps, exclude)."""
        return self.agc_cfg

    # ----------------------------------------------------------- names binding
    def bind_model(self, model: nn.Module) -> None:
        """Name the optimizer's parameters from ``model`` and resolve ``exclude``.

        Args:
            model (nn.Module): The trained model, possibly wrapped by DDP
                (its ``module.`` prefix is stripped) or ``torch.compile``.

        Raises:
            ValueError: If an ``exclude`` pattern matches no parameter.
        """
        named = list(_unwrap(model).named_parameters())
        names = {id(p): n for n, p in named}
        self._param_names = names
        self._plan, self._plan_key = None, None
        if self.agc_cfg is None:
            return
        optim_params = [p for g in self.optimizer.param_groups
                        for p in g['params']]
        candidates = [names[id(p)] for p in optim_params if id(p) in names]
        excluded = set()
        for pattern in self.agc_cfg['exclude']:
            hits = [p for p in optim_params
                    if id(p) in names and fnmatchcase(names[id(p)], pattern)]
            if not hits:
                close = difflib.get_close_matches(pattern, candidates, n=3)
                raise ValueError(
                    f'agc.exclude pattern {pattern!r} matches no parameter of '
                    f'the optimizer. Closest names: {close}; last parameters: '
                    f'{candidates[-4:]}. Patterns are full dotted names or '
                    'fnmatch patterns; use exclude=[] to clip every parameter.')
            excluded.update(id(p) for p in hits)
        self._excluded_ids = excluded

    @property
    def param_names(self) -> Optional[Dict[int, str]]:
        """dict or None: ``id(param) -> name`` once a model is bound."""
        return self._param_names

    def _ensure_bound(self, model: nn.Module) -> None:
        if self.agc_cfg is not None and self._param_names is None:
            self.bind_model(model)

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Bind parameter names on first use, then MMEngine's context."""
        self._ensure_bound(model)
        with super().optim_context(model):
            yield

    def initialize_count_status(self, model: nn.Module, init_counts: int,
                                max_counts: int) -> None:
        """Bind parameter names (Runner calls this before training)."""
        self._ensure_bound(model)
        super().initialize_count_status(model, init_counts, max_counts)

    # ---------------------------------------------------------------- clipping
    def _get_plan(self) -> _ClipPlan:
        params = [p for g in self.optimizer.param_groups for p in g['params']
                  if p.grad is not None]
        key = tuple(id(p) for p in params)
        if self._plan is None or key != self._plan_key:
            if self.agc_cfg['exclude'] and self._excluded_ids is None:
                raise RuntimeError(
                    'AGCOptimWrapper has exclusions '
                    f'{self.agc_cfg["exclude"]} but no parameter names: call '
                    '`bind_model(model)` (or run the step inside '
                    '`optim_context(model)`) before the first update.')
            excluded_ids = self._excluded_ids or set()
            self._plan = _ClipPlan(
                [p for p in params if id(p) not in excluded_ids],
                [p for p in params if id(p) in excluded_ids])
            self._plan_key = key
        return self._plan

    @torch.no_grad()
    def agc_clip_(self) -> Optional[torch.Tensor]:
        """Apply eq. 3 to the current gradients in place.

        Vectorised: whole-tensor norms of all scalars/vectors in one
        ``torch._foreach_norm``, one norm kernel per matrix/kernel for the rows,
        the ratios and scales of all units in a handful of kernels, and one
        ``torch._foreach_mul_`` to apply them; no host sync.

        Returns:
            torch.Tensor or None: ``[non_finite, clip_frac, max_ratio]`` (float32,
            on the parameters' device), or None if no parameter has a gradient.
        """
        cfg = self.agc_cfg
        plan = self._get_plan()
        if not plan.params and not plan.excluded:
            return None
        grad_norms, weight_norms = [], []
        if plan.whole:
            grad_norms += torch._foreach_norm([p.grad for p in plan.whole])
            weight_norms += torch._foreach_norm(plan.whole)
        for p, dims in zip(plan.rows, plan.row_dims):
            grad_norms.append(torch.linalg.vector_norm(p.grad, dim=dims))
            weight_norms.append(torch.linalg.vector_norm(p, dim=dims))
        # excluded gradients still take part in the finiteness check
        excluded_norms = (
            torch._foreach_norm([p.grad for p in plan.excluded])
            if plan.excluded else [])
        if plan.params:
            g = torch.cat([n.reshape(-1).float() for n in grad_norms])
            w = torch.cat([n.reshape(-1).float() for n in weight_norms])
            denom = w.clamp_min_(cfg['eps'])
            ratio = g / denom
            clipped = ratio > cfg['clipping']
            scale = torch.where(clipped, cfg['clipping'] * denom / g,
                                torch.ones_like(g))
            scales = [
                s.view(shape).to(p.grad.dtype) for s, shape, p in zip(
                    scale.split(plan.unit_counts), plan.scale_shapes,
                    plan.params)
            ]
            torch._foreach_mul_([p.grad for p in plan.params], scales)
            total = g.sum()
            clip_frac = clipped.float().mean()
            max_ratio = ratio.max()
        else:
            device = plan.excluded[0].device
            total = torch.zeros((), device=device)
            clip_frac = torch.zeros((), device=device)
            max_ratio = torch.zeros((), device=device)
        if excluded_norms:
            total = total + torch.stack(excluded_norms).float().sum()
        non_finite = (~torch.isfinite(total)).float()
        return torch.stack([non_finite, clip_frac, max_ratio])

    def clip_gradients(self) -> Optional[torch.Tensor]:
        """Clip the current gradients: AGC, then ``clip_grad`` if configured.

        The single place where gradients are clipped; :meth:`step` calls it
        after accumulation, all-reduce and un-scaling. Subclasses may call or
        override it.

        Returns:
            torch.Tensor or None: AGC statistics, see :meth:`agc_clip_`.
        """
        stats = self.agc_clip_() if self.agc_cfg is not None else None
        if self.clip_grad_kwargs:
            self._clip_grad()
        return stats

    def _record(self, stats: List[float]) -> None:
        hub = MessageHub.get_current_instance()
        hub.update_scalar('train/agc_clip_frac', stats[1])
        hub.update_scalar('train/agc_max_ratio', stats[2])

    def _apply_or_skip(self, stats: Optional[torch.Tensor], **kwargs) -> bool:
        """Run ``optimizer.step`` unless the gradient is non-finite.

        Args:
            stats (torch.Tensor, optional): From :meth:`clip_gradients`.
            **kwargs: Passed to ``optimizer.step``.

        Returns:
            bool: True if the update was applied, False if it was skipped.

        Raises:
            RuntimeError: On the ``max_consecutive_skips``-th consecutive skip.
        """
        values = stats.tolist() if stats is not None else None  # the one sync
        if values is not None and values[0] > 0:
            self.consecutive_skips += 1
            self.skipped_steps += 1
            self.optimizer.zero_grad()
            print_log(
                f'{type(self).__name__}: non-finite gradient, update skipped '
                f'({self.consecutive_skips} in a row, {self.skipped_steps} in '
                'total); weights and optimizer state left unchanged.',
                logger='current',
                level=logging.WARNING)
            if self.consecutive_skips >= self.max_consecutive_skips:
                raise RuntimeError(
                    f'{type(self).__name__}: {self.consecutive_skips} '
                    'consecutive updates had a non-finite gradient '
                    f'(max_consecutive_skips={self.max_consecutive_skips}); '
                    'stopping training. Check the learning rate, the data and '
                    'the loss for NaN/Inf.')
            return False
        self.consecutive_skips = 0
        if values is not None:
            self._record(values)
        self.optimizer.step(**kwargs)
        return True

    def step(self, **kwargs) -> None:
        """Clip (AGC, then ``clip_grad``) and update, skipping non-finite steps.

        Args:
            **kwargs: Passed to :meth:`torch.optim.Optimizer.step`.
        """
        if self.agc_cfg is None:
            super().step(**kwargs)
            return
        self._apply_or_skip(self.clip_gradients(), **kwargs)


@OPTIM_WRAPPERS.register_module()
class AmpAGCOptimWrapper(AmpOptimWrapper, AGCOptimWrapper):
    """:class:`AGCOptimWrapper` under automatic mixed precision.

    float16: the loss is scaled; :meth:`step` un-scales the gradients once,
    clips them (AGC, then ``clip_grad``) and lets the ``GradScaler`` step, which
    skips the update on a non-finite gradient and lowers the scale (those skips
    are expected while the scale calibrates and do not count towards
    ``max_consecutive_skips``).

    bfloat16 needs no loss scaling: with the default ``loss_scale='auto'`` the
    scaler is disabled for bfloat16 and the non-finite handling of
    :class:`AGCOptimWrapper` applies (skip, log, stop after
    ``max_consecutive_skips``).

    Args:
        loss_scale (str or float or dict): ``'auto'`` = ``'dynamic'`` for float16
            and no scaling for bfloat16; otherwise as in
            :class:`AmpOptimWrapper`. Defaults to ``'auto'``.
        dtype (str or torch.dtype, optional): Autocast dtype, as in
            :class:`AmpOptimWrapper`. Defaults to None (float16 on CUDA).
        **kwargs: Passed to :class:`AmpOptimWrapper` and
            :class:`AGCOptimWrapper` (``optimizer``, ``agc``,
            ``max_consecutive_skips``, ``accumulative_counts``, ``clip_grad``).
    """

    amp_variant = 'AmpAGCOptimWrapper'

    def __init__(self,
                 loss_scale: Union[str, float, dict] = 'auto',
                 dtype: Union[str, torch.dtype, None] = None,
                 **kwargs) -> None:
        if loss_scale == 'auto':
            is_bf16 = dtype in ('bfloat16', torch.bfloat16)
            loss_scale = dict(enabled=False) if is_bf16 else 'dynamic'
        super().__init__(loss_scale=loss_scale, dtype=dtype, **kwargs)

    def step(self, **kwargs) -> None:
        """Un-scale, clip, then step through the scaler (or skip).

        Args:
            **kwargs: Passed to :meth:`torch.optim.Optimizer.step`.
        """
        if self.agc_cfg is None:
            AmpOptimWrapper.step(self, **kwargs)
            return
        if not self.loss_scaler.is_enabled():
            self._apply_or_skip(self.clip_gradients(), **kwargs)
            return
        self.loss_scaler.unscale_(self.optimizer)
        stats = self.clip_gradients()
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update(self._scale_update_param)
        if stats is not None:
            values = stats.tolist()
            if values[0] == 0:
                self._record(values)

"""Sharpness-Aware Minimization with the NFNet paper's cheap ascent step.

SAM (Foret et al., ICLR 2021, https://arxiv.org/abs/2010.01412) updates the weights
``w`` with the gradient of the loss taken at a perturbed point ``w + e``, where
``e = rho * g / ||g||`` and ``g`` is the gradient at ``w`` (the *ascent* step). The
NFNet paper (Brock et al., 2021, appendix A.4) makes the ascent cheap: its gradient is
computed on a fraction (20%) of the same batch that the descent step uses, and under
data parallelism the ascent gradients are not synchronised, so that every replica
perturbs its own copy of the weights; on fewer devices this is mimicked by accumulating
descent gradients over several perturbations.

This module holds the whole concept:

- :class:`SAMOptimWrapper` / :class:`AmpSAMOptimWrapper`: the SAM hyper-parameters and
  the perturb / restore primitives; they subclass the AGC wrappers, so the descent
  gradient is clipped (when ``agc`` is set) after the DDP all-reduce and the AMP
  unscaling, exactly as without SAM.
- :func:`sam_train_step`: the two-pass train step. MMEngine's train steps pass no
  closure to the optimizer wrapper, so the models that need SAM call this function:
  ``SAMImageClassifier`` on one device and ``SAMDistributedDataParallel`` under DDP.
"""
import math
from contextlib import contextmanager, nullcontext
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmpretrain.registry import OPTIM_WRAPPERS

# The AGC wrappers are the bases; with agc=None they are plain (Amp)OptimWrappers.
from .agc import AGCOptimWrapper, AmpAGCOptimWrapper

__all__ = [
    'SAMOptimWrapper', 'AmpSAMOptimWrapper', 'sam_train_step', 'is_sam_optim_wrapper'
]

_WRONG_STEP_MSG = (
    '{name}.update_params() was called: the model ran a normal (one-pass) train step '
    'with a SAM optimizer wrapper, which would silently train without SAM. Use '
    "model=dict(type='SAMImageClassifier', ...) on one device, and "
    "model_wrapper_cfg=dict(type='SAMDistributedDataParallel') under distributed "
    'training, or call nfnet_mm.engine.optimizers.sam_train_step() yourself.')


class _SAMMixin:
    """SAM state and primitives shared by the plain and the AMP wrapper.

    Kept as a mixin (not a base class) so that each SAM wrapper keeps the method
    resolution order of its AGC base: ``step()`` of the AMP wrapper must stay the one
    that unscales before clipping.
    """

    def __init__(self,
                 *args,
                 rho: float = 0.05,
                 adaptive: bool = False,
                 ascent_fraction: float = 0.2,
                 ascent_replicas: int = 1,
                 eps: float = 1e-12,
                 **kwargs):
        if not (isinstance(rho, (int, float)) and rho > 0):
            raise ValueError(f'rho must be a positive number, but got {rho!r}')
        if not (isinstance(ascent_fraction, (int, float))
                and 0 < ascent_fraction <= 1):
            raise ValueError('ascent_fraction must be a number in (0, 1], but got '
                             f'{ascent_fraction!r}')
        if (isinstance(ascent_replicas, bool) or not isinstance(ascent_replicas, int)
                or ascent_replicas < 1):
            raise ValueError('ascent_replicas must be an int >= 1, but got '
                             f'{ascent_replicas!r}')
        if not isinstance(adaptive, bool):
            raise ValueError(f'adaptive must be True or False, but got {adaptive!r}')
        if not (isinstance(eps, (int, float)) and eps >= 0):
            raise ValueError(f'eps must be a number >= 0, but got {eps!r}')
        super().__init__(*args, **kwargs)
        self.rho = float(rho)
        self.adaptive = adaptive
        self.ascent_fraction = float(ascent_fraction)
        self.ascent_replicas = ascent_replicas
        self.eps = float(eps)
        # Unperturbed copies of the parameters while a perturbation is applied.
        self._sam_backup: Dict[nn.Parameter, torch.Tensor] = {}

    # ------------------------------------------------------------------ helpers
    def ascent_size(self, batch_size: int) -> int:
        """Number of samples of a batch used for the ascent gradient.

        Args:
            batch_size (int): Number of samples of the (per-replica) batch.

        Returns:
            int: ``ceil(ascent_fraction * batch_size)``, at least 1.
        """
        # round() first so that e.g. 0.2 * 10 = 2.0000000000000004 gives 2, not 3.
        return max(1, math.ceil(round(self.ascent_fraction * batch_size, 9)))

    def _sam_params(self) -> List[nn.Parameter]:
        """The parameters SAM perturbs: those of the optimizer with a gradient."""
        return [
            p for group in self.optimizer.param_groups for p in group['params']
            if p.grad is not None
        ]

    def _loss_for_backward(self, loss: torch.Tensor) -> torch.Tensor:
        """The tensor to back-propagate for ``loss`` (the AMP wrapper scales it)."""
        return loss

    def _grad_scale(self) -> float:
        """The factor the gradients carry from loss scaling (1 without AMP)."""
        return 1.0

    # --------------------------------------------------------------- primitives
    def stash_grads(self) -> List[Optional[torch.Tensor]]:
        """Move the gradients of the optimizer's parameters aside.

        Gradients accumulated by earlier descent passes (gradient accumulation,
        ``ascent_replicas``) must not enter the ascent direction; they are moved out
        and put back with :meth:`unstash_grads`, which also drops the ascent gradient.

        Returns:
            list: The moved gradients (``None`` where a parameter had none).
        """
        stash = []
        for group in self.optimizer.param_groups:
            for p in group['params']:
                stash.append(p.grad)
                p.grad = None
        return stash

    def unstash_grads(self, stash: List[Optional[torch.Tensor]]) -> None:
        """Put back the gradients moved by :meth:`stash_grads`."""
        params = [p for group in self.optimizer.param_groups for p in group['params']]
        for p, grad in zip(params, stash):
            p.grad = grad

    def ascent_backward(self, loss: torch.Tensor) -> None:
        """Back-propagate the ascent loss (loss-scaled under AMP, not counted)."""
        self._loss_for_backward(loss).backward()

    def descent_backward(self, loss: torch.Tensor) -> None:
        """Back-propagate (part of) the descent loss, not counted.

        The loss is divided for gradient accumulation (:meth:`scale_loss`) and
        loss-scaled under AMP; :meth:`finish_update` counts the iteration once.
        """
        self._loss_for_backward(self.scale_loss(loss)).backward()

    @torch.no_grad()
    def perturb(self) -> Tuple[torch.Tensor, bool]:
        """Move the parameters to ``w + e`` using their current (ascent) gradients.

        ``e = rho * g / ||g||``, or with ``adaptive=True`` (ASAM)
        ``e = rho * |w|^2 g / || |w| g ||``; the norms run over all perturbed
        parameters together. Under AMP the gradients are first unscaled in place
        (they are dropped after the perturbation). A non-finite or zero norm (e.g.
        an fp16 overflow) skips the perturbation.

        Returns:
            tuple: The L2 norm of the (unscaled) ascent gradient, a 0-d tensor, and
            whether the parameters were perturbed.
        """
        if self._sam_backup:
            raise RuntimeError('perturb() called while the parameters are already '
                               'perturbed; call restore() first.')
        params = self._sam_params()
        if not params:
            return torch.zeros(()), False
        # The ascent gradients are dropped after this: unscale them in place.
        grads = [p.grad.detach() for p in params]
        grad_scale = self._grad_scale()
        if grad_scale != 1.0:
            torch._foreach_mul_(grads, 1.0 / grad_scale)
        grad_norm = torch.nn.utils.get_total_norm(grads, 2.0)
        if self.adaptive:
            abs_w = [p.detach().abs() for p in params]
            directions = torch._foreach_mul(grads, abs_w)  # T_w g
            direction_norm = torch.nn.utils.get_total_norm(directions, 2.0)
        else:
            direction_norm = grad_norm
        norm = float(direction_norm)  # one host sync, needed for the skip decision
        if not math.isfinite(norm) or norm == 0:
            return grad_norm.detach(), False
        scale = self.rho / (norm + self.eps)
        for i, p in enumerate(params):
            self._sam_backup[p] = p.detach().clone()
            if self.adaptive:  # e = rho |w| (|w| g) / || |w| g ||
                p.addcmul_(directions[i].to(p.dtype), abs_w[i].to(p.dtype),
                           value=scale)
            else:  # e = rho g / ||g||
                p.add_(grads[i].to(p.dtype), alpha=scale)
        return grad_norm.detach(), True

    @torch.no_grad()
    def restore(self) -> None:
        """Put the parameters back to ``w`` (exact copies); a no-op when unperturbed."""
        for p, w in self._sam_backup.items():
            p.copy_(w)
        self._sam_backup = {}

    @property
    def is_perturbed(self) -> bool:
        """Whether the parameters currently sit at the perturbed point."""
        return bool(self._sam_backup)

    def finish_update(self,
                      step_kwargs: Optional[dict] = None,
                      zero_kwargs: Optional[dict] = None) -> None:
        """Count the iteration, then step and zero the gradients when due.

        This is the end of :meth:`update_params` after SAM's backward passes: the
        optimizer (with AGC and loss-scaler bookkeeping in ``step()``) runs once per
        update, on the unperturbed weights.
        """
        if self.is_perturbed:
            raise RuntimeError('The parameters are still perturbed; restore() them '
                               'before the optimizer step.')
        self._inner_count += 1
        if self.should_update():
            self.step(**(step_kwargs or {}))
            self.zero_grad(**(zero_kwargs or {}))

    def update_params(self, *args, **kwargs) -> None:
        """Refuse the one-pass update: SAM needs :func:`sam_train_step`."""
        raise RuntimeError(_WRONG_STEP_MSG.format(name=type(self).__name__))

    def __repr__(self) -> str:
        return (super().__repr__() + f'SAM: rho={self.rho}, adaptive={self.adaptive}, '
                f'ascent_fraction={self.ascent_fraction}, '
                f'ascent_replicas={self.ascent_replicas}\n')


@OPTIM_WRAPPERS.register_module()
class SAMOptimWrapper(_SAMMixin, AGCOptimWrapper):
    """Optimizer wrapper for Sharpness-Aware Minimization (fp32).

    Use it with a model whose train step runs :func:`sam_train_step`
    (``SAMImageClassifier``, or ``SAMDistributedDataParallel`` under DDP); its
    ``update_params()`` refuses the normal one-pass step.

    One update, per replica (see :func:`sam_train_step` for the full order):
    ascent gradient ``g`` on the first ``ceil(ascent_fraction * B)`` samples of the
    batch at ``w`` (never all-reduced), ``w <- w + e``, descent gradient of the whole
    batch at ``w + e`` (all-reduced under DDP), ``w`` restored exactly, then
    ``step()`` (AGC clipping of the descent gradient when ``agc`` is set, then the
    optimizer).

    Example config::

        optim_wrapper = dict(
            type='SAMOptimWrapper',
            optimizer=dict(type='SGD', lr=0.1, momentum=0.9, nesterov=True),
            rho=0.05, ascent_fraction=0.2,
            agc=dict(clipping=0.01))

    Args:
        optimizer (Optimizer): The wrapped optimizer (built from a config dict by
            MMEngine's optimizer-wrapper constructor).
        rho (float): Radius of the perturbation. Defaults to 0.05 (paper).
        adaptive (bool): ASAM scaling, ``e = rho * |w|^2 g / || |w| g ||``.
            Defaults to False.
        ascent_fraction (float): Fraction of the batch, in (0, 1], whose first
            ``ceil(ascent_fraction * B)`` samples give the ascent gradient. 1.0 is
            the original SAM. Defaults to 0.2 (paper).
        ascent_replicas (int): Mimic this many unsynchronised replicas on each
            device: the batch is split into this many chunks, each with its own
            ascent (on its first ``ceil(ascent_fraction * chunk)`` samples) and its
            own perturbation, and the chunks' descent gradients are accumulated
            (paper appendix A.4). Defaults to 1.
        eps (float): Added to the norm in the denominator of ``e``.
            Defaults to 1e-12.
        **kwargs: Passed to the base wrapper (``agc``, ``accumulative_counts``,
            ``clip_grad``). With ``accumulative_counts=k`` every micro-batch gets its
            own perturbation of the same ``w`` and the ``k`` descent gradients are
            averaged, i.e. ``k`` mimicked replicas.
    """

    amp_variant = 'AmpSAMOptimWrapper'


@OPTIM_WRAPPERS.register_module()
class AmpSAMOptimWrapper(_SAMMixin, AmpAGCOptimWrapper):
    """:class:`SAMOptimWrapper` under automatic mixed precision (fp16 or bf16).

    Both passes run under autocast. The ascent loss is loss-scaled like the descent
    loss; the ascent gradients are unscaled by hand (the scaler's ``unscale_()`` may
    run only once per update, and is kept for the descent gradients), and a
    non-finite ascent gradient skips the perturbation of that update (the descent
    then runs at ``w``). The scaler's ``step()`` and ``update()`` run once per update,
    in ``step()``, and only see the descent gradients.

    Args:
        See :class:`SAMOptimWrapper`; the AMP arguments (``loss_scale``, ``dtype``)
        are those of MMEngine's ``AmpOptimWrapper``.
    """

    def _loss_for_backward(self, loss: torch.Tensor) -> torch.Tensor:
        return self.loss_scaler.scale(loss)

    def _grad_scale(self) -> float:
        if not self.loss_scaler.is_enabled():
            return 1.0
        return float(self.loss_scaler.get_scale())


def is_sam_optim_wrapper(optim_wrapper) -> bool:
    """Whether ``optim_wrapper`` is one of the SAM wrappers of this module."""
    return isinstance(optim_wrapper, _SAMMixin)


# ---------------------------------------------------------------- train step
def _batch_size(data: Union[dict, tuple, list]) -> int:
    """Number of samples of a pre-processed batch (its ``inputs``)."""
    if isinstance(data, dict):
        if 'inputs' not in data:
            raise TypeError('sam_train_step needs the data pre-processor to return a '
                            f"dict with 'inputs'; got keys {sorted(data)}")
        inputs = data['inputs']
    elif isinstance(data, (list, tuple)) and data:
        inputs = data[0]
    else:
        raise TypeError('sam_train_step needs a dict, list or tuple from the data '
                        f'pre-processor, but got {type(data).__name__}')
    if isinstance(inputs, (torch.Tensor, list, tuple)):
        return len(inputs)
    raise TypeError('sam_train_step cannot split inputs of type '
                    f'{type(inputs).__name__}; expected a Tensor, list or tuple')


def _slice_batch(data, start: int, stop: int, batch_size: int):
    """Samples ``start:stop`` of a pre-processed batch (tensors, per-sample lists)."""

    def cut(value):
        if value is None:
            return None
        if isinstance(value, (torch.Tensor, list, tuple)) and len(value) == batch_size:
            return value[start:stop]
        raise TypeError(
            f'sam_train_step cannot split a batch entry of type '
            f'{type(value).__name__} (length '
            f'{len(value) if hasattr(value, "__len__") else "n/a"}) into samples; '
            f'batch size is {batch_size}')

    if isinstance(data, dict):
        return {key: cut(value) for key, value in data.items()}
    return type(data)(cut(value) for value in data)


def _forward_loss(model: nn.Module, data) -> dict:
    """``model(..., mode='loss')`` on a pre-processed batch (dict or sequence)."""
    if isinstance(data, dict):
        return model(**data, mode='loss')
    return model(*data, mode='loss')


@contextmanager
def _no_sync(model: nn.Module, enabled: bool = True):
    """``model.no_sync()`` when ``enabled`` and the model is DDP-like, else nothing."""
    ctx = model.no_sync() if enabled and hasattr(model, 'no_sync') else nullcontext()
    with ctx:
        yield


def _chunk_bounds(batch_size: int, chunks: int) -> List[Tuple[int, int]]:
    """Contiguous ``(start, stop)`` of ``chunks`` near-equal parts of a batch."""
    base, extra = divmod(batch_size, chunks)
    bounds, start = [], 0
    for i in range(chunks):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def sam_train_step(model: nn.Module,
                   data: Union[dict, tuple, list],
                   optim_wrapper: _SAMMixin,
                   forward_model: Optional[nn.Module] = None
                   ) -> Dict[str, torch.Tensor]:
    """One SAM training iteration (the two-pass replacement of ``train_step``).

    1. The data pre-processor runs once, with ``training=True`` (so batch augments
       such as MixUp/CutMix draw their randomness once); both passes see this batch.
    2. The batch (``B`` samples on this replica) is split into
       ``optim_wrapper.ascent_replicas`` contiguous chunks (one chunk by default).
       For each chunk of ``b`` samples:

       a. ascent: gradient ``g`` of the loss on the chunk's first
          ``ceil(ascent_fraction * b)`` samples at ``w``, under ``no_sync()`` (never
          all-reduced); gradients accumulated earlier are set aside meanwhile;
       b. ``w <- w + e`` (:meth:`SAMOptimWrapper.perturb`), the ascent gradient is
          dropped;
       c. descent: gradient of ``loss_chunk * b / B`` at ``w + e``, accumulated;
          under DDP only the last chunk's backward all-reduces (and only when the
          optimizer wrapper would sync anyway, see gradient accumulation);
       d. ``w`` is restored exactly (also when the descent raises).
    3. The optimizer wrapper counts the iteration once and, when due, runs
       ``step()`` (AGC, loss scaler, optimizer) and ``zero_grad()``.

    With one chunk the descent gradient is that of the whole batch at ``w + e``.

    Args:
        model (nn.Module): The ``BaseModel`` (its ``data_preprocessor`` and
            ``parse_losses`` are used).
        data (dict | tuple | list): The batch from the data loader.
        optim_wrapper (SAMOptimWrapper): A SAM optimizer wrapper.
        forward_model (nn.Module, optional): What runs the forward passes: the DDP
            wrapper of ``model`` under distributed training. Defaults to ``model``.

    Returns:
        dict: Log variables: those of ``parse_losses`` for the descent pass (so
        ``loss`` is the loss of the batch at the perturbed weights, averaged over
        chunks by size), plus ``sam_ascent_loss`` (loss of the ascent samples at
        ``w``), ``sam_ascent_grad_norm`` (L2 norm of the ascent gradient, averaged
        over chunks) and ``sam_skipped`` (fraction of chunks whose perturbation was
        skipped for a non-finite or zero ascent gradient).
    """
    if not is_sam_optim_wrapper(optim_wrapper):
        raise TypeError('sam_train_step needs a SAM optimizer wrapper '
                        '(SAMOptimWrapper or AmpSAMOptimWrapper), but got '
                        f'{type(optim_wrapper).__name__}')
    forward_model = model if forward_model is None else forward_model
    sync = optim_wrapper.should_sync()
    with optim_wrapper.optim_context(forward_model):
        data = model.data_preprocessor(data, True)
    batch_size = _batch_size(data)
    chunks = optim_wrapper.ascent_replicas
    if chunks > batch_size:
        raise ValueError(f'ascent_replicas={chunks} is larger than the batch size '
                         f'{batch_size} on this replica')

    log_vars: Dict[str, torch.Tensor] = {}
    ascent_losses, grad_norms, skipped = [], [], 0
    bounds = _chunk_bounds(batch_size, chunks)
    for index, (start, stop) in enumerate(bounds):
        size = stop - start
        chunk = _slice_batch(data, start, stop, batch_size)
        ascent = _slice_batch(chunk, 0, optim_wrapper.ascent_size(size), size)
        last = index == len(bounds) - 1
        try:
            # a-b: local ascent gradient, perturbation.
            stash = optim_wrapper.stash_grads()
            try:
                with _no_sync(forward_model):
                    with optim_wrapper.optim_context(forward_model):
                        losses = _forward_loss(forward_model, ascent)
                    ascent_loss, _ = model.parse_losses(losses)
                    optim_wrapper.ascent_backward(ascent_loss)
                grad_norm, perturbed = optim_wrapper.perturb()
            finally:
                optim_wrapper.unstash_grads(stash)
            # c: descent gradient at the perturbed point.
            with _no_sync(forward_model, enabled=not (last and sync)):
                with optim_wrapper.optim_context(forward_model):
                    losses = _forward_loss(forward_model, chunk)
                loss, chunk_vars = model.parse_losses(losses)
                optim_wrapper.descent_backward(loss * (size / batch_size))
        finally:
            # d: never leave the weights perturbed.
            optim_wrapper.restore()
        ascent_losses.append(ascent_loss.detach())
        grad_norms.append(grad_norm)
        skipped += not perturbed
        for key, value in chunk_vars.items():
            value = value.detach() * (size / batch_size) if isinstance(
                value, torch.Tensor) else value * (size / batch_size)
            log_vars[key] = log_vars[key] + value if key in log_vars else value
    optim_wrapper.finish_update()

    device = ascent_losses[0].device
    log_vars['sam_ascent_loss'] = torch.stack(ascent_losses).mean()
    log_vars['sam_ascent_grad_norm'] = torch.stack(
        [n.to(device) for n in grad_norms]).mean()
    log_vars['sam_skipped'] = torch.tensor(skipped / len(bounds), device=device)
    return log_vars

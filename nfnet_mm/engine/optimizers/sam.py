"""Sharpness-Aware Minimization with the NFNet paper's cheap ascent (App. A.4).

MMEngine passes no closure, so the two-pass step runs from the model
(:mod:`nfnet_mm.models.utils.sam_train_step`).
"""
import math
from typing import List, Tuple

import torch
import torch.nn as nn
from mmengine.optim import AmpOptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS

from .agc import AGCOptimWrapper, AmpAGCOptimWrapper

__all__ = ['SAMOptimWrapper', 'AmpSAMOptimWrapper']


def _total_norm(tensors: List[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all ``tensors`` together."""
    if not tensors:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


class _SAMMixin:
    """SAM settings and the perturbation; the step is the AGC base's."""

    def __init__(self,
                 *args,
                 rho: float = 0.05,
                 adaptive: bool = False,
                 ascent_fraction: float = 0.2,
                 eps: float = 1e-12,
                 **kwargs) -> None:
        if not (rho > 0 and 0 < ascent_fraction <= 1 and eps >= 0
                and isinstance(adaptive, bool)):
            raise ValueError(
                'SAM needs rho > 0, 0 < ascent_fraction <= 1, eps >= 0 and a '
                f'bool adaptive, got rho={rho!r}, ascent_fraction='
                f'{ascent_fraction!r}, eps={eps!r}, adaptive={adaptive!r}')
        super().__init__(*args, **kwargs)
        self.rho, self.adaptive, self.eps = float(rho), adaptive, float(eps)
        self.ascent_fraction = float(ascent_fraction)
        self._backup: List[Tuple[nn.Parameter, torch.Tensor]] = []

    def ascent_size(self, batch_size: int) -> int:
        """The ascent samples: ``ceil(ascent_fraction * batch_size)``, >= 1."""
        # round() first: 0.2 * 10 = 2.0000000000000004 must give 2, not 3
        return max(1, math.ceil(round(self.ascent_fraction * batch_size, 9)))

    def ascend(self, loss: torch.Tensor) -> Tuple[torch.Tensor, bool]:
        """Back-propagate the ascent ``loss``; move the weights to ``w + e``.

        ``e = rho * g / ||g||`` (ASAM: ``rho * |w|^2 g / || |w| g ||``); ``g``
        is un-scaled by hand under AMP, then dropped (accumulated gradients are
        kept). A non-finite or zero norm leaves ``w``. Returns ``||g||`` and
        whether the weights moved.
        """
        scale = (self.loss_scaler.get_scale() if isinstance(
            self, AmpOptimWrapper) else 1.0)  # 1.0 if disabled
        all_params = self._params()
        stash = [p.grad for p in all_params]
        self.optimizer.zero_grad(set_to_none=True)
        try:
            (loss * scale).backward()
            with torch.no_grad():
                params = [p for p in all_params if p.grad is not None]
                grads = [p.grad for p in params]
                if scale != 1.0:
                    torch._foreach_div_(grads, scale)
                grad_norm = direction_norm = _total_norm(grads)
                if self.adaptive:
                    abs_w = torch._foreach_abs(params)
                    grads = torch._foreach_mul(grads, abs_w)  # |w| g
                    direction_norm = _total_norm(grads)
                norm = float(direction_norm)
                if not math.isfinite(norm) or norm == 0:
                    return grad_norm, False
                if self.adaptive:
                    grads = torch._foreach_mul(grads, abs_w)  # |w|^2 g
                self._backup = [(p, p.detach().clone()) for p in params]
                torch._foreach_add_(
                    params, grads, alpha=self.rho / (norm + self.eps))
                return grad_norm, True
        finally:
            for p, grad in zip(all_params, stash):
                p.grad = grad

    @torch.no_grad()
    def restore(self) -> None:
        """Put the weights back to ``w`` (exact copies); a no-op at ``w``."""
        for p, w in self._backup:
            p.copy_(w)
        self._backup = []

    @property
    def is_perturbed(self) -> bool:
        """Whether the weights currently sit at ``w + e``."""
        return bool(self._backup)

    def update_params(self, *args, **kwargs) -> None:
        """Refuse MMEngine's one-pass update: it would train without SAM."""
        raise RuntimeError(
            f'{type(self).__name__}.update_params() was called: a one-pass '
            'train step with a SAM optimizer wrapper trains without SAM. Use '
            "model=dict(type='SAMImageClassifier', ...) on one device, and "
            "model_wrapper_cfg=dict(type='SAMDistributedDataParallel') under "
            'distributed training, or call '
            'nfnet_mm.models.utils.sam_train_step().')


@OPTIM_WRAPPERS.register_module()
class SAMOptimWrapper(_SAMMixin, AGCOptimWrapper):
    """Optimizer wrapper for Sharpness-Aware Minimization (Foret et al. 2021).

    The ascent gradient is not all-reduced: each replica (or accumulation
    step) perturbs its own weights, as in the NFNet paper.

    Args:
        optimizer (Optimizer): The wrapped optimizer.
        rho (float): Radius of the perturbation. Defaults to 0.05 (paper).
        adaptive (bool): ASAM, ``e = rho * |w|^2 g / || |w| g ||``.
            Defaults to False.
        ascent_fraction (float): The first ``ceil(ascent_fraction * B)``
            samples of the batch give the ascent gradient; 1.0 is the original
            SAM. Defaults to 0.2 (paper).
        eps (float): Added to the norm dividing ``e``. Defaults to 1e-12.
        **kwargs: Passed to :class:`AGCOptimWrapper` (``agc``,
            ``accumulative_counts``: ``k`` mimicked replicas, ``clip_grad``).
    """

    amp_variant = 'AmpSAMOptimWrapper'


@OPTIM_WRAPPERS.register_module()
class AmpSAMOptimWrapper(_SAMMixin, AmpAGCOptimWrapper):
    """:class:`SAMOptimWrapper` under mixed precision (arguments of both).

    The scaler sees only the descent gradients: an ascent overflow does not
    lower the scale.
    """

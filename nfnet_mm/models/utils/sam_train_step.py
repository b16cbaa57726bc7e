"""The SAM two-pass train step (NFNet paper, appendix A.4).

The perturbation itself is the optimizer wrapper's (``SAMOptimWrapper``).
"""
from contextlib import nullcontext
from typing import Dict, Union

import torch
import torch.nn as nn
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper

__all__ = ['sam_train_step', 'is_sam_optim_wrapper', 'SAMTrainStepMixin']


def is_sam_optim_wrapper(optim_wrapper) -> bool:
    """Whether ``optim_wrapper`` has SAM's ``ascend`` (SAMOptimWrapper)."""
    return all(
        callable(getattr(optim_wrapper, name, None))
        for name in ('ascent_size', 'ascend', 'restore'))


def _first_samples(data: Union[dict, tuple, list], optim_wrapper):
    """The first ``ascent_size(B)`` samples of a pre-processed batch."""
    keys, values = zip(*data.items()) if isinstance(data, dict) else (None,
                                                                      data)
    size = optim_wrapper.ascent_size(len(values[0]))
    if any(v is not None and len(v) != len(values[0]) for v in values):
        raise TypeError(
            'sam_train_step needs a pre-processed batch of per-sample '
            f'entries, got {[type(v).__name__ for v in values]}')
    cut = [None if v is None else v[:size] for v in values]
    return dict(zip(keys, cut)) if keys else type(data)(cut)


def sam_train_step(model: nn.Module,
                   data: Union[dict, tuple, list],
                   optim_wrapper,
                   forward_model: nn.Module = None,
                   ascent_data=None) -> Dict[str, torch.Tensor]:
    """One SAM iteration, the two-pass replacement of ``train_step``.

    The batch is pre-processed once. Ascent on its first
    ``ceil(ascent_fraction * B)`` samples at ``w`` (under ``no_sync()``),
    descent on the whole batch at ``w + e``, then ``w`` is restored. Logs
    also ``sam_ascent_loss``, ``sam_ascent_grad_norm`` and ``sam_skipped``.

    Args:
        model (nn.Module): The ``BaseModel`` (pre-processor, ``parse_losses``).
        data (dict | tuple | list): The batch from the data loader.
        optim_wrapper (SAMOptimWrapper): A SAM optimizer wrapper.
        forward_model (nn.Module, optional): What runs the forward passes (the
            DDP wrapper of ``model``). Defaults to ``model``.
        ascent_data (dict | tuple | list, optional): Another batch whose
            first samples give the ascent (A.4's negative control). Defaults
            to ``data``.
    """
    if not is_sam_optim_wrapper(optim_wrapper):
        raise TypeError('sam_train_step needs a SAM optimizer wrapper, got '
                        f'{type(optim_wrapper).__name__}')
    forward_model = model if forward_model is None else forward_model
    with optim_wrapper.optim_context(forward_model):
        data = model.data_preprocessor(data, True)
        ascent = data if ascent_data is None else model.data_preprocessor(
            ascent_data, True)
    with getattr(forward_model, 'no_sync', nullcontext)():  # a local ascent
        with optim_wrapper.optim_context(forward_model):
            losses = forward_model._run_forward(
                _first_samples(ascent, optim_wrapper), mode='loss')
        ascent_loss, _ = model.parse_losses(losses)
        grad_norm, perturbed = optim_wrapper.ascend(ascent_loss)
    try:
        with optim_wrapper.optim_context(forward_model):
            losses = forward_model._run_forward(data, mode='loss')
        loss, log_vars = model.parse_losses(losses)
        optim_wrapper.backward(optim_wrapper.scale_loss(loss))
    finally:
        optim_wrapper.restore()
    if optim_wrapper.should_update():
        optim_wrapper.step()
        optim_wrapper.zero_grad()
    log_vars.update(
        sam_ascent_loss=ascent_loss.detach(),
        sam_ascent_grad_norm=grad_norm.to(ascent_loss.device),
        sam_skipped=ascent_loss.new_tensor(float(not perturbed)))
    return log_vars


class SAMTrainStepMixin:
    """A model (or DDP model wrapper) whose ``train_step`` runs SAM.

    With a non-SAM optimizer wrapper it is the base class's ``train_step``.
    """

    def train_step(self, data: Union[dict, tuple, list],
                   optim_wrapper: OptimWrapper) -> Dict[str, torch.Tensor]:
        if not is_sam_optim_wrapper(optim_wrapper):
            return super().train_step(data, optim_wrapper)
        model = self.module if is_model_wrapper(self) else self
        return sam_train_step(model, data, optim_wrapper, forward_model=self)

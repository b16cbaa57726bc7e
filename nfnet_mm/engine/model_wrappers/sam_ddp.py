"""DDP model wrapper that runs the SAM two-pass train step."""
from typing import Dict, Union

import torch
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import OptimWrapper
from mmpretrain.registry import MODEL_WRAPPERS

from nfnet_mm.engine.optimizers.sam import is_sam_optim_wrapper, sam_train_step

__all__ = ['SAMDistributedDataParallel']


@MODEL_WRAPPERS.register_module()
class SAMDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` whose train step can run SAM.

    ``MMDistributedDataParallel.train_step`` never calls the wrapped model's
    ``train_step``, so a SAM classifier alone is not enough under DDP. With a SAM
    optimizer wrapper this wrapper runs
    :func:`nfnet_mm.engine.optimizers.sam_train_step` with the DDP module doing the
    forward passes: the ascent forward/backward runs under ``no_sync()`` (every
    replica perturbs its own copy of the weights from its own data, as in the NFNet
    paper, appendix A.4), the descent backward all-reduces, so the optimizer steps
    with the all-rank average of the descent gradients and the weights stay equal
    across ranks. With any other optimizer wrapper it is the normal DDP step.

    Works for any MMEngine ``BaseModel`` whose pre-processed batch is a dict (or
    sequence) of per-sample tensors/lists, e.g. MMPretrain's ``ImageClassifier``.

    Example config::

        model_wrapper_cfg = dict(type='SAMDistributedDataParallel')

    Args:
        See ``mmengine.model.MMDistributedDataParallel``. ``detect_anomalous_params``
        is ignored by the SAM step.
    """

    def train_step(self, data: Union[dict, tuple, list],
                   optim_wrapper: OptimWrapper) -> Dict[str, torch.Tensor]:
        """Run the SAM step with a SAM optimizer wrapper, else the DDP step.

        Args:
            data (dict | tuple | list): A batch from the data loader.
            optim_wrapper (OptimWrapper): The optimizer wrapper.

        Returns:
            dict: Log variables (see ``sam_train_step`` for the SAM ones).
        """
        if is_sam_optim_wrapper(optim_wrapper):
            return sam_train_step(
                self.module, data, optim_wrapper, forward_model=self)
        return super().train_step(data, optim_wrapper)

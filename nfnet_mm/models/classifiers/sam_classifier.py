"""A classifier whose train step runs the SAM two-pass update."""
from typing import Dict, Union

import torch
from mmengine.optim import OptimWrapper
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS

from nfnet_mm.engine.optimizers.sam import is_sam_optim_wrapper, sam_train_step

__all__ = ['SAMImageClassifier']


@MODELS.register_module()
class SAMImageClassifier(ImageClassifier):
    """MMPretrain's ``ImageClassifier`` with a Sharpness-Aware Minimization step.

    MMEngine's ``BaseModel.train_step`` runs one forward/backward and calls
    ``optim_wrapper.update_params()``; SAM needs two passes. When the optimizer
    wrapper is a SAM one (``SAMOptimWrapper``/``AmpSAMOptimWrapper``), this
    classifier's ``train_step`` runs
    :func:`nfnet_mm.engine.optimizers.sam_train_step` instead; with any other
    wrapper it is the normal ``ImageClassifier`` step. All other behaviour
    (arguments, forward modes, state-dict keys) is that of ``ImageClassifier``.

    Under distributed training MMEngine's DDP wrapper never calls the module's
    ``train_step``: also set
    ``model_wrapper_cfg=dict(type='SAMDistributedDataParallel')``.

    Example config::

        model = dict(type='SAMImageClassifier', backbone=..., neck=..., head=...)
        optim_wrapper = dict(type='SAMOptimWrapper', rho=0.05, ascent_fraction=0.2,
                             optimizer=dict(type='SGD', lr=0.1, momentum=0.9))

    Args:
        See ``mmpretrain.models.ImageClassifier``.
    """

    def train_step(self, data: Union[dict, tuple, list],
                   optim_wrapper: OptimWrapper) -> Dict[str, torch.Tensor]:
        """Run the SAM step with a SAM optimizer wrapper, else the normal step.

        Args:
            data (dict | tuple | list): A batch from the data loader.
            optim_wrapper (OptimWrapper): The optimizer wrapper.

        Returns:
            dict: Log variables (see ``sam_train_step`` for the SAM ones).
        """
        if is_sam_optim_wrapper(optim_wrapper):
            return sam_train_step(self, data, optim_wrapper)
        return super().train_step(data, optim_wrapper)

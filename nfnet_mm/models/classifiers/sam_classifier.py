"""A classifier whose train step runs the SAM two-pass update."""
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS

from ..utils.sam_train_step import SAMTrainStepMixin

__all__ = ['SAMImageClassifier']


@MODELS.register_module()
class SAMImageClassifier(SAMTrainStepMixin, ImageClassifier):
    """MMPretrain's ``ImageClassifier`` whose ``train_step`` runs SAM.

    Only with a SAM optimizer wrapper; else it is ``ImageClassifier``. Under
    DDP set ``model_wrapper_cfg=dict(type='SAMDistributedDataParallel')``.
    """

"""A classifier whose train step runs the SAM two-pass update."""
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS

from ..utils.sam_train_step import SAMTrainStepMixin

__all__ = ['SAMImageClassifier']


@MODELS.register_module()
class SAMImageClassifier(SAMTrainStepMixin, ImageClassifier):
    """MMPretrain's ``ImageClassifier`` whose ``train_step`` runs SAM.

    With a SAM optimizer wrapper (``SAMOptimWrapper``, ``AmpSAMOptimWrapper``)
    ``train_step`` runs :func:`~nfnet_mm.models.utils.sam_train_step`; with any
    other it is ``ImageClassifier``'s. Everything else (arguments, state-dict
    keys) is ``ImageClassifier``'s. Under DDP also set
    ``model_wrapper_cfg=dict(type='SAMDistributedDataParallel')``.

    Example config::

        model = dict(
            type='SAMImageClassifier', backbone=..., neck=..., head=...)
        optim_wrapper = dict(
            type='SAMOptimWrapper', rho=0.05, ascent_fraction=0.2,
            optimizer=dict(type='SGD', lr=0.1, momentum=0.9))
    """

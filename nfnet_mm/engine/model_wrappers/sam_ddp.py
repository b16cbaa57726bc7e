"""DDP model wrapper that runs the SAM two-pass train step."""
from mmengine.model import MMDistributedDataParallel
from mmpretrain.registry import MODEL_WRAPPERS

from nfnet_mm.models.utils.sam_train_step import SAMTrainStepMixin

__all__ = ['SAMDistributedDataParallel']


@MODEL_WRAPPERS.register_module()
class SAMDistributedDataParallel(SAMTrainStepMixin, MMDistributedDataParallel):
    """``MMDistributedDataParallel`` whose train step runs SAM.

    DDP never calls the module's ``train_step``, so SAM needs this wrapper: the
    ascent runs under ``no_sync()`` (paper appendix A.4), the descent
    all-reduces. With a non-SAM optimizer wrapper it is the normal DDP step;
    the SAM step ignores ``detect_anomalous_params``.
    """

from .sam_ddp import SAMDistributedDataParallel

__all__ = ['SAMDistributedDataParallel']

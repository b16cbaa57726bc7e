"""Refusal of sharded training (FSDP1/FSDP2, ZeRO): see docs/benchmarks.md."""
from typing import Iterable, Optional, Tuple

import torch
import torch.distributed as dist

try:
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.distributed.tensor import DTensor
except ImportError:  # a torch built without distributed
    DTensor = ZeroRedundancyOptimizer = ()

__all__ = ['ShardedTrainingError', 'sharded_kind', 'refuse_sharded']

SUPPORTED = ('Supported: one device, DDP (MMDistributedDataParallel or '
             'SAMDistributedDataParallel) and gradient accumulation '
             '(accumulative_counts).')


class ShardedTrainingError(RuntimeError):
    """A sharded parameter or optimizer met a tool that needs whole ones."""


def sharded_kind(param: torch.Tensor) -> Optional[str]:
    """What sharding ``param`` is under, or None if it is whole."""
    if getattr(param, '_fsdp_flattened', False):
        fqns = getattr(param, '_fqns', None)
        held = f' holding {list(fqns)[:3]}' if fqns else ''
        return f'an FSDP1 flat parameter view{held}'
    if isinstance(param, DTensor):
        return 'a DTensor (FSDP2 fully_shard or tensor parallel)'
    return None


def refuse_sharded(named_params: Iterable[Tuple[str, torch.Tensor]],
                   who: str,
                   optimizer: Optional[torch.optim.Optimizer] = None) -> None:
    """Raise at the first sharded parameter, or a multi-process ZeRO
    ``optimizer`` (MMEngine 0.10.7 saves on rank 0 only: a save hangs)."""
    for name, param in named_params:
        kind = sharded_kind(param)
        if kind:
            raise ShardedTrainingError(
                f'{who}: parameter {name!r} is {kind}; {who} needs whole '
                f'parameters, sharded training (FSDP) is refused. '
                f'{SUPPORTED}')
    if (isinstance(optimizer, ZeroRedundancyOptimizer) and dist.is_available()
            and dist.is_initialized() and dist.get_world_size() > 1):
        raise ShardedTrainingError(
            f'{who}: ZeroRedundancyOptimizer is refused: MMEngine saves '
            'checkpoints on rank 0 only while its state_dict() gathers from '
            f'every rank, so the first checkpoint save hangs. {SUPPORTED}')

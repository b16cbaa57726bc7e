from .checkpoint import (CheckpointError, CheckpointMismatchError,
                         NotACheckpointError, UnsafeCheckpointError,
                         atomic_save, atomic_write, check_state_dict,
                         describe_unreadable, forbidden_globals, strip_prefix)
from .sharding import ShardedTrainingError, refuse_sharded, sharded_kind

__all__ = [
    'CheckpointError', 'CheckpointMismatchError', 'NotACheckpointError',
    'UnsafeCheckpointError', 'atomic_save', 'atomic_write', 'check_state_dict',
    'describe_unreadable', 'forbidden_globals', 'strip_prefix',
    'ShardedTrainingError', 'refuse_sharded', 'sharded_kind'
]

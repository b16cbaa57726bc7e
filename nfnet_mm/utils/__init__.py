from .checkpoint import (CheckpointError, CheckpointMismatchError,
                         NotACheckpointError, UnsafeCheckpointError,
                         atomic_save, atomic_write, check_state_dict,
                         describe_unreadable, forbidden_globals, strip_prefix)

__all__ = [
    'CheckpointError', 'CheckpointMismatchError', 'NotACheckpointError',
    'UnsafeCheckpointError', 'atomic_save', 'atomic_write', 'check_state_dict',
    'describe_unreadable', 'forbidden_globals', 'strip_prefix'
]

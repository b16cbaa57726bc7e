"""Importing this module (e.g. in a config's ``custom_imports``, as ours do)
is the opt-in to :func:`~nfnet_mm.compat.enable_safe_checkpoints`."""
from .checkpoint import enable_safe_checkpoints

enable_safe_checkpoints()

"""Importing this module is the opt-in to the checkpoint fixes, for any tool.

Our configs carry ``custom_imports = dict(imports=['nfnet_mm',
'nfnet_mm.compat.safe_checkpoints'])``: MMEngine's ``Config`` imports it when
the config is read, before any ``Runner`` loads or resumes, so MMPretrain's
own ``tools/train.py`` and ``tools/test.py`` (and ``--resume``) get
:func:`~nfnet_mm.compat.checkpoint.enable_safe_checkpoints`.
"""
from .checkpoint import enable_safe_checkpoints

enable_safe_checkpoints()

"""Importing this module is the opt-in to nfnet_mm's checkpoint fixes for any tool.

A config line ``custom_imports = dict(imports=['nfnet_mm', 'nfnet_mm.safe_checkpoints'])``
runs :func:`nfnet_mm.enable_safe_checkpoints` when the config is read, before any
``Runner`` loads or resumes: weights-only loading with MMEngine's allow-list and clear
errors, and atomic checkpoint saves.
"""
from .utils.checkpoint import enable_safe_checkpoints

enable_safe_checkpoints()

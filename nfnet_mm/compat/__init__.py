"""Opt-in workarounds, each a no-op outside the versions it targets:
:mod:`.checkpoint` (torch >= 2.6, MMEngine <= 0.10.7; opt-in:
:mod:`.safe_checkpoints`) and :mod:`.onnx` (torch >= 2.9, MMDeploy 1.3.1)."""
from .checkpoint import (SAFE_CHECKPOINT_GLOBALS, TARGETED_MMENGINE,
                         enable_safe_checkpoints, load_checkpoint_file)
from .onnx import torchscript_onnx_exporter

__all__ = [
    'SAFE_CHECKPOINT_GLOBALS', 'TARGETED_MMENGINE', 'enable_safe_checkpoints',
    'load_checkpoint_file', 'torchscript_onnx_exporter'
]

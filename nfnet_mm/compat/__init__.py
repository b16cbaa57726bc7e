"""Workarounds for the host stack, each naming the versions it targets.

Nothing here runs at ``import nfnet_mm``; each is opt-in and a no-op outside
the versions it targets.

========================  ==========================  =========================
workaround                targets                     where
========================  ==========================  =========================
weights-only loading of   torch >= 2.6 with MMEngine  :mod:`.checkpoint`
MMEngine checkpoints,     <= 0.10.7 (mmengine#1655)   (opt-in:
atomic checkpoint saves                               :mod:`.safe_checkpoints`)
TorchScript ONNX          torch >= 2.9 with MMDeploy  :mod:`.onnx`
exporter for MMDeploy     1.3.1
``setuptools<82``         MMEngine 0.10.x imports     ``setup.py``,
                          ``pkg_resources``           ``tools/install.sh``
warnings no setting       mmcv-lite 2.x, setuptools   ``tools/tool_utils.py``
avoids                    >= 81, MMEngine 0.10.x      (before any import)
========================  ==========================  =========================
"""
from .checkpoint import (SAFE_CHECKPOINT_GLOBALS, TARGETED_MMENGINE,
                         enable_safe_checkpoints, load_checkpoint_file)
from .onnx import torchscript_onnx_exporter

__all__ = [
    'SAFE_CHECKPOINT_GLOBALS', 'TARGETED_MMENGINE', 'enable_safe_checkpoints',
    'load_checkpoint_file', 'torchscript_onnx_exporter'
]

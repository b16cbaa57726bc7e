"""ONNX export helpers: the TorchScript exporter for MMDeploy on torch >= 2.9.

From PyTorch 2.9 on, ``torch.onnx.export`` defaults to ``dynamo=True``
(the ``torch.export``-based exporter, which needs ``onnxscript``). MMDeploy
1.3.1
calls ``torch.onnx.export`` without a ``dynamo`` argument and relies on the
TorchScript exporter: its function rewriters and symbolic overrides only act on
TorchScript tracing. :func:`use_torchscript_onnx_exporter` makes
``dynamo=False`` the default again for calls that do not choose; a call that
passes ``dynamo`` explicitly is left alone.

Nothing is patched when ``nfnet_mm`` is imported, except on explicit request
through the environment: with ``NFNET_MM_ONNX_EXPORTER=torchscript`` set, the
import of this module installs the wrapper. That is how the patch reaches
every process of an MMDeploy run: MMDeploy runs ``torch2onnx`` in a spawned
subprocess, which inherits the environment and imports ``nfnet_mm`` when it
builds the model from a config with
``custom_imports=dict(imports=['nfnet_mm'])``.
``tools/deploy/mmdeploy.py`` sets the variable and also installs the wrapper in
its own process.
"""
import contextlib
import functools
import inspect
import os
from typing import Callable, Iterator, Optional

import torch
import torch.onnx

__all__ = [
    'ONNX_EXPORTER_ENV', 'use_torchscript_onnx_exporter',
    'restore_onnx_exporter', 'torchscript_onnx_exporter',
    'is_torchscript_exporter_default'
]

#: Environment variable that, set to ``'torchscript'``, installs the wrapper
#: when this module is imported (in every process that imports ``nfnet_mm``).
ONNX_EXPORTER_ENV = 'NFNET_MM_ONNX_EXPORTER'

_VALID_ENV_VALUES = ('torchscript', 'default', '')

# The original ``torch.onnx.export`` while our wrapper is installed.
_original_export: Optional[Callable] = None


def _export_has_dynamo_arg(export_fn: Callable) -> bool:
    try:
        return 'dynamo' in inspect.signature(export_fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - C functions
        return False


def is_torchscript_exporter_default() -> bool:
    """Whether ``torch.onnx.export`` uses the TorchScript exporter by default.

    Returns:
        bool: True on torch versions without a ``dynamo`` argument or whose
        default is ``dynamo=False``, and while our wrapper is installed.
    """
    if _original_export is not None:
        return True
    export_fn = torch.onnx.export
    if not _export_has_dynamo_arg(export_fn):
        return True
    default = inspect.signature(export_fn).parameters['dynamo'].default
    return default is False


def use_torchscript_onnx_exporter() -> bool:
    """Make ``dynamo=False`` the default of ``torch.onnx.export``.

    Replaces ``torch.onnx.export`` by a wrapper that adds ``dynamo=False``
    when the caller does not pass ``dynamo``. Calling it twice is harmless.
    On torch versions whose ``export`` has no ``dynamo`` argument (< 2.5)
    nothing is changed.

    Returns:
        bool: True if the wrapper is installed (now or before).
    """
    global _original_export
    if _original_export is not None:
        return True
    original = torch.onnx.export
    if not _export_has_dynamo_arg(original):
        return False

    @functools.wraps(original)
    def export(*args, **kwargs):
        kwargs.setdefault('dynamo', False)
        return original(*args, **kwargs)

    export._nfnet_mm_torchscript_default = True
    _original_export = original
    torch.onnx.export = export
    return True


def restore_onnx_exporter() -> None:
    """Undo :func:`use_torchscript_onnx_exporter` (no-op if not installed)."""
    global _original_export
    if _original_export is None:
        return
    torch.onnx.export = _original_export
    _original_export = None


@contextlib.contextmanager
def torchscript_onnx_exporter() -> Iterator[None]:
    """Context manager: the TorchScript exporter is the default inside.

    Restores the previous state on exit (a wrapper that was installed before
    entering stays installed).
    """
    was_installed = _original_export is not None
    use_torchscript_onnx_exporter()
    try:
        yield
    finally:
        if not was_installed:
            restore_onnx_exporter()


def _apply_env_request() -> None:
    value = os.environ.get(ONNX_EXPORTER_ENV, '').strip().lower()
    if value not in _VALID_ENV_VALUES:
        raise ValueError(
            f'{ONNX_EXPORTER_ENV}={value!r} is not a valid choice; choose one '
            f'of {_VALID_ENV_VALUES[:2]} (or leave it unset).')
    if value == 'torchscript':
        use_torchscript_onnx_exporter()


_apply_env_request()

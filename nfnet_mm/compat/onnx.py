"""MMDeploy 1.3.1 under torch >= 2.9: the TorchScript ONNX exporter.

torch 2.9 made ``torch.onnx.export`` use the dynamo exporter by default.
MMDeploy 1.3.1 (the newest release) passes no ``dynamo``, and its rewriters
patch TorchScript tracing only. :func:`torchscript_onnx_exporter` restores the
old default while an export runs; our own exporter passes ``dynamo=False``
itself.
"""
import contextlib
import functools
import inspect
from typing import Iterator

import torch
from mmengine.utils import digit_version

__all__ = ['torchscript_onnx_exporter']


@contextlib.contextmanager
def torchscript_onnx_exporter() -> Iterator[None]:
    """Inside: ``torch.onnx.export`` defaults to ``dynamo=False``.

    A no-op where ``torch.onnx.export`` has no ``dynamo`` argument (torch
    < 2.5) or does not default to it (torch < 2.9).
    """
    original = torch.onnx.export
    if (digit_version(torch.__version__) < digit_version('2.9.0')
            or 'dynamo' not in inspect.signature(original).parameters):
        yield
        return

    @functools.wraps(original)
    def export(*args, **kwargs):
        kwargs.setdefault('dynamo', False)
        return original(*args, **kwargs)

    torch.onnx.export = export
    try:
        yield
    finally:
        torch.onnx.export = original

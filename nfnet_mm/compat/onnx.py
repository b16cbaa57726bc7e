"""MMDeploy 1.3.1 under torch >= 2.9: the TorchScript ONNX exporter.

torch 2.9 exports with dynamo by default; MMDeploy's rewriters need tracing."""
import contextlib
import functools
import inspect
from typing import Iterator

import torch
from mmengine.utils import digit_version

__all__ = ['torchscript_onnx_exporter']


@contextlib.contextmanager
def torchscript_onnx_exporter() -> Iterator[None]:
    """Inside: ``torch.onnx.export`` defaults to ``dynamo=False`` (a no-op on
    torch < 2.9 or where it has no ``dynamo`` argument)."""
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

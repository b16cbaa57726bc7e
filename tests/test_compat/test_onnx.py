"""nfnet_mm.compat.onnx: the TorchScript exporter for MMDeploy on
torch >= 2.9."""
import pytest
import torch

from nfnet_mm.compat import onnx as compat_onnx
from nfnet_mm.compat import torchscript_onnx_exporter


def test_torchscript_exporter_only_inside_the_context(monkeypatch, tmp_path):
    calls = []

    def export(model, args=(), f=None, *, dynamo: bool = True, **kwargs):
        calls.append(dynamo)

    monkeypatch.setattr(torch.onnx, 'export', export)
    with torchscript_onnx_exporter():
        torch.onnx.export(None, (), 'x.onnx')
        torch.onnx.export(None, (), 'x.onnx', dynamo=True)  # chosen: kept
    torch.onnx.export(None, (), 'x.onnx')
    assert calls == [False, True, True]
    assert torch.onnx.export is export  # restored
    with pytest.raises(RuntimeError, match='boom'):
        with torchscript_onnx_exporter():
            raise RuntimeError('boom')
    assert torch.onnx.export is export  # restored after an error too


def test_torchscript_exporter_is_a_no_op_before_torch_2_9(monkeypatch):
    calls = []

    def export(model, args=(), f=None, *, dynamo: bool = True, **kwargs):
        calls.append(dynamo)

    monkeypatch.setattr(torch.onnx, 'export', export)
    monkeypatch.setattr(compat_onnx.torch, '__version__', '2.8.0')
    with torchscript_onnx_exporter():
        assert torch.onnx.export is export  # nothing wrapped
        torch.onnx.export(None, (), 'x.onnx')
    assert calls == [True]

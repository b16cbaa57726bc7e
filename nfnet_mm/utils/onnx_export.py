"""ONNX export helpers: the TorchScript exporter for MMDeploy on torch >= 2.9."""

__all__ = []

"""Export a classifier to ONNX and check the graph with onnxruntime.

``tools/deploy/mmdeploy.py`` runs MMDeploy's pipeline instead."""
import copy
import os
import os.path as osp
from collections import Counter
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    'ExportError', 'build_classifier', 'load_image', 'preprocess',
    'export_onnx', 'op_histogram', 'ort_session', 'export_and_check',
    'DEFAULT_ATOL'
]

DEFAULT_ATOL = 1e-4


class ExportError(RuntimeError):
    """The exported graph does not reproduce the PyTorch model."""


class _Logits(nn.Module):
    """``ImageClassifier`` in ``mode='tensor'``: inputs -> logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        out = self.model(inputs, mode='tensor')
        return out[-1] if isinstance(out, (tuple, list)) else out


def build_classifier(config, checkpoint: Optional[str] = None) -> nn.Module:
    """Build ``config``'s model (file or Config) in eval mode and load
    ``checkpoint`` (None or ``'none'``: random weights)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint
    from mmpretrain.registry import MODELS

    import nfnet_mm  # noqa: F401  (registers our modules)

    cfg = Config.fromfile(config) if isinstance(config, str) else config
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = copy.deepcopy(cfg.model)
    if model_cfg.get('backbone', {}).get('init_cfg', None) is not None:
        model_cfg['backbone']['init_cfg'] = None  # no pretrained download
    # as MMEngine's Runner: a top-level data_preprocessor is the model's
    if cfg.get('data_preprocessor', None) is not None:
        model_cfg.setdefault('data_preprocessor',
                             copy.deepcopy(cfg.data_preprocessor))
    model = MODELS.build(model_cfg)
    if checkpoint and checkpoint.lower() != 'none':
        load_checkpoint(
            model,
            checkpoint,
            map_location='cpu',
            strict=True,
            logger='silent')
    model.cfg = cfg
    return model.eval()


def load_image(path: str) -> np.ndarray:
    """The image at ``path`` as uint8 HWC BGR (``demo/demo.png`` is one)."""
    import mmcv
    img = mmcv.imread(path)
    if img is None:
        raise FileNotFoundError(f'Cannot read image {path!r}')
    return img


def preprocess(model: nn.Module,
               img: np.ndarray,
               shape: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Run the config's test pipeline and the data preprocessor.

    Args:
        model (nn.Module): Model built by :func:`build_classifier`.
        img (np.ndarray): uint8 HWC image.
        shape (Sequence[int], optional): ``(H, W)`` to resize to (bilinear).
    """
    from mmcv.transforms import Compose
    from mmpretrain.registry import TRANSFORMS  # noqa: F401

    cfg = model.cfg
    pipeline = cfg.get('test_pipeline', None)
    if pipeline is None:
        pipeline = cfg.test_dataloader.dataset.pipeline
    # the image is given as an array: drop file loading
    pipeline = Compose([
        copy.deepcopy(t) for t in pipeline
        if t['type'] not in ('LoadImageFromFile',
                             'mmpretrain.LoadImageFromFile')
    ])
    h, w = img.shape[:2]
    data = pipeline(dict(img=img, img_shape=(h, w), ori_shape=(h, w)))
    batch = model.data_preprocessor(
        dict(inputs=[data['inputs']], data_samples=[data['data_samples']]),
        False)
    inputs = batch['inputs'].float()
    if shape is not None and tuple(inputs.shape[-2:]) != tuple(shape):
        inputs = F.interpolate(
            inputs, size=tuple(shape), mode='bilinear', align_corners=False)
    return inputs


def export_onnx(model: nn.Module,
                inputs: torch.Tensor,
                out: str,
                opset: int = 17,
                dynamic_batch: bool = False,
                constant_folding: bool = True) -> None:
    """Export ``model(inputs, mode='tensor')`` to ``out`` (TorchScript).

    Unfolded models need ``constant_folding=False``: torch 2.14's exporter
    merges equal gains and biases into one misnamed initializer otherwise.
    """
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    dynamic_axes = dict(
        input={0: 'batch'}, output={0: 'batch'}) if dynamic_batch else None
    with torch.no_grad():
        torch.onnx.export(
            _Logits(model).eval(), (inputs, ),
            out,
            dynamo=False,
            input_names=['input'],
            output_names=['output'],
            opset_version=opset,
            dynamic_axes=dynamic_axes,
            do_constant_folding=constant_folding,
            keep_initializers_as_inputs=not constant_folding)


def op_histogram(onnx_file: str) -> Dict[str, int]:
    """Op-type histogram of an ONNX graph (sorted by count, then name)."""
    import onnx
    graph = onnx.load(onnx_file, load_external_data=False).graph
    counts = Counter(node.op_type for node in graph.node)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def ort_session(onnx_file: str,
                threads: Optional[int] = None,
                optimize: bool = True):
    """A CPU onnxruntime session with ``threads`` intra-op threads (None:
    onnxruntime's choice); ``optimize=False`` disables graph optimisation."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(
        onnx_file, options, providers=['CPUExecutionProvider'])


def export_and_check(config: str,
                     checkpoint: Optional[str],
                     out: str,
                     img: str,
                     fold: bool = True,
                     opset: int = 17,
                     dynamic_batch: bool = False,
                     shape: Optional[Sequence[int]] = None,
                     atol: float = DEFAULT_ATOL,
                     threads: Optional[int] = None) -> dict:
    """Build, fold (unless ``fold=False``), export, check with onnxruntime.

    The reference is the unfolded model on ``img`` (and a batch of two with
    ``dynamic_batch``); a difference above ``atol`` removes ``out``.
    """
    model = build_classifier(config, checkpoint)
    inputs = preprocess(model, load_image(img), shape)
    with torch.no_grad():
        reference = _Logits(model)(inputs)
    if fold:
        model.backbone.switch_to_deploy()
    export_onnx(
        model,
        inputs,
        out,
        opset=opset,
        dynamic_batch=dynamic_batch,
        constant_folding=fold)
    session = ort_session(out, threads)
    result = session.run(None, {'input': inputs.numpy()})[0]
    diff = float(np.abs(result - reference.numpy()).max())
    ops = op_histogram(out)
    report = dict(
        onnx=out,
        folded=fold,
        opset=opset,
        input_shape=list(inputs.shape),
        max_abs_diff=diff,
        atol=atol,
        ops=ops,
        num_nodes=sum(ops.values()))
    if dynamic_batch:
        batch = torch.cat([inputs, inputs.flip(-1)])
        with torch.no_grad():  # the exported (possibly folded) model
            ref2 = _Logits(model)(batch)
        res2 = session.run(None, {'input': batch.numpy()})[0]
        diff2 = float(np.abs(res2 - ref2.numpy()).max())
        report['max_abs_diff_batch2'], diff = diff2, max(diff, diff2)
    if not diff <= atol:  # before any timing; the wrong graph is not kept
        os.remove(out)
        raise ExportError(
            f'onnxruntime differs from PyTorch by {diff:.3g} (max abs), '
            f'more than the allowed {atol:g}: {out} was not kept.')
    return report

"""Export to ONNX and check the graph with onnxruntime: our own exporter
(:func:`export_and_check`) and MMDeploy 1.3.1's (:func:`deploy_with_mmdeploy`).

From PyTorch 2.9 on ``torch.onnx.export`` defaults to ``dynamo=True``, while
MMDeploy passes no ``dynamo`` and rewrites only TorchScript tracing:
:func:`torchscript_onnx_exporter` restores ``dynamo=False`` while an export
runs, and importing ``nfnet_mm`` changes nothing.
"""
import contextlib
import copy
import functools
import inspect
import os
import os.path as osp
import statistics
from collections import Counter
from typing import Dict, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nfnet_mm.datasets.fashion_mnist import DEFAULT_FASHION_MNIST_ROOT, _read_idx

__all__ = ['ExportError', 'build_classifier', 'load_image', 'preprocess', 'export_onnx',
           'op_histogram', 'ort_session', 'time_session', 'export_and_check',
           'torchscript_onnx_exporter', 'deploy_with_mmdeploy', 'DEFAULT_ATOL']

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
    """Build the model of ``config`` (file or Config) in eval mode and load
    ``checkpoint`` (None or ``'none'``: the constructors' random weights)."""
    import nfnet_mm  # noqa: F401  (registers our modules)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint
    from mmpretrain.registry import MODELS

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
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                        logger='silent')
    model.cfg = cfg
    return model.eval()


def load_image(path: Optional[str] = None) -> np.ndarray:
    """A real image as uint8 HWC BGR: ``path``, or by default the first
    Fashion-MNIST test image (28x28 grey, replicated to 3 channels)."""
    if path is not None:
        import mmcv
        img = mmcv.imread(path)
        if img is None:
            raise FileNotFoundError(f'Cannot read image {path!r}')
        return img
    file = osp.join(DEFAULT_FASHION_MNIST_ROOT, 't10k-images-idx3-ubyte.gz')
    if not osp.exists(file):
        raise FileNotFoundError(f'No {file} (apt-get install '
                                'dataset-fashion-mnist); pass --img PATH')
    img = _read_idx(file)[0]
    return np.repeat(img[:, :, None], 3, axis=2).copy()


def preprocess(model: nn.Module, img: np.ndarray,
               shape: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Run the config's test pipeline and the data preprocessor.

    Args:
        model (nn.Module): Model built by :func:`build_classifier`.
        img (np.ndarray): uint8 HWC image.
        shape (Sequence[int], optional): ``(H, W)`` to resize the input to
            (bilinear). Defaults to None.
    """
    from mmcv.transforms import Compose
    from mmpretrain.registry import TRANSFORMS  # noqa: F401

    cfg = model.cfg
    pipeline = cfg.get('test_pipeline', None)
    if pipeline is None:
        pipeline = cfg.test_dataloader.dataset.pipeline
    # the image is given as an array: drop file loading
    pipeline = Compose([copy.deepcopy(t) for t in pipeline if t['type'] not in
                        ('LoadImageFromFile', 'mmpretrain.LoadImageFromFile')])
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


def export_onnx(model: nn.Module, inputs: torch.Tensor, out: str,
                opset: int = 17, dynamic_batch: bool = False,
                constant_folding: bool = True) -> None:
    """Export ``model(inputs, mode='tensor')`` with the TorchScript exporter
    to ``out``, the batch axis dynamic with ``dynamic_batch``.

    Note: unfolded (no ``switch_to_deploy()``), torch 2.14's exporter merges
    equal-valued gains and biases into one initializer but names them apart:
    an invalid graph. Pass ``constant_folding=False`` for unfolded models:
    the initializers are then also kept as (unmerged) graph inputs.
    """
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    dynamic_axes = ({'input': {0: 'batch'}, 'output': {0: 'batch'}}
                    if dynamic_batch else None)
    with torch.no_grad():
        torch.onnx.export(
            _Logits(model).eval(), (inputs, ), out, dynamo=False,
            input_names=['input'], output_names=['output'],
            opset_version=opset, dynamic_axes=dynamic_axes,
            do_constant_folding=constant_folding,
            keep_initializers_as_inputs=not constant_folding)


def op_histogram(onnx_file: str) -> Dict[str, int]:
    """Op-type histogram of an ONNX graph (sorted by count, then name)."""
    import onnx
    graph = onnx.load(onnx_file, load_external_data=False).graph
    counts = Counter(node.op_type for node in graph.node)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def ort_session(onnx_file: str, threads: Optional[int] = None,
                optimize: bool = True):
    """A CPU onnxruntime session with ``threads`` intra-op threads (None:
    onnxruntime's choice); ``optimize=False`` disables every graph
    optimisation (they constant-fold computations on initializers)."""
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


def time_session(session, inputs: np.ndarray, runs: int,
                 warmup: int = 2) -> Dict[str, float]:
    """Median/min wall time (ms) of ``session.run`` over ``runs`` calls."""
    from .benchmarks.harness import Runner, time_interleaved
    feed = {session.get_inputs()[0].name: inputs}
    runner = Runner('onnxruntime', lambda: session.run(None, feed))
    time_interleaved([runner], warmup, runs, torch.device('cpu'))
    if runner.error:
        raise RuntimeError(f'onnxruntime failed: {runner.error}')
    return dict(median_ms=statistics.median(runner.times),
                min_ms=min(runner.times), runs=runs)


def export_and_check(config: str, checkpoint: Optional[str], out: str,
                     fold: bool = True, opset: int = 17,
                     dynamic_batch: bool = False, img: Optional[str] = None,
                     shape: Optional[Sequence[int]] = None,
                     atol: float = DEFAULT_ATOL, benchmark: int = 0,
                     threads: Optional[int] = None) -> dict:
    """Build, fold (unless ``fold=False``), export, check with onnxruntime.

    ``img`` (:func:`load_image`) goes through :func:`preprocess`; the
    reference is the PyTorch model before folding. With ``dynamic_batch`` a
    batch of two is checked too; ``benchmark`` times that many runs.

    Returns ``max_abs_diff``, ``ops`` (histogram), ``folded``, shapes and
    ``onnxruntime`` timings; raises :class:`ExportError` if onnxruntime
    differs from PyTorch by more than ``atol``.
    """
    model = build_classifier(config, checkpoint)
    inputs = preprocess(model, load_image(img), shape)
    with torch.no_grad():
        reference = _Logits(model)(inputs)
    if fold:
        model.backbone.switch_to_deploy()
    export_onnx(model, inputs, out, opset=opset, dynamic_batch=dynamic_batch,
                constant_folding=fold)
    session = ort_session(out, threads)
    result = session.run(None, {'input': inputs.numpy()})[0]
    diff = float(np.abs(result - reference.numpy()).max())
    ops = op_histogram(out)
    report = dict(onnx=out, folded=fold, opset=opset,
                  input_shape=list(inputs.shape), max_abs_diff=diff,
                  atol=atol, ops=ops, num_nodes=sum(ops.values()))
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
    if benchmark > 0:
        report['onnxruntime'] = time_session(session, inputs.numpy(), benchmark)
    return report


@contextlib.contextmanager
def torchscript_onnx_exporter() -> Iterator[None]:
    """Inside: ``torch.onnx.export`` defaults to ``dynamo=False`` (on torch
    < 2.5, which has no such argument, nothing changes)."""
    original = torch.onnx.export
    if 'dynamo' not in inspect.signature(original).parameters:
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


def deploy_with_mmdeploy(deploy_cfg: str, model_cfg: str,
                         checkpoint: Optional[str], work_dir: str,
                         img: Optional[str] = None, device: str = 'cpu',
                         dump_info: bool = False,
                         atol: float = DEFAULT_ATOL) -> dict:
    """MMDeploy 1.3.1 (onnxruntime), checked against the PyTorch model.

    ``mmdeploy.apis.torch2onnx`` runs inside :func:`torchscript_onnx_exporter`
    (MMDeploy folds the model with ``switch_to_deploy()``); then MMDeploy's
    backend classifier and the unfolded PyTorch model classify ``img``.

    Args:
        deploy_cfg (str): MMDeploy config, e.g. ``configs/deploy/
            classification_onnxruntime_static.py``.
        checkpoint (str, optional): Checkpoint; None or ``'none'``: random
            weights (saved to ``WORK_DIR/random_init.pth`` for both sides).
        img (str, optional): Image file. Defaults to :func:`load_image`'s.
        dump_info (bool): Write the SDK meta files. Defaults to False.
        atol (float): Allowed max abs difference of the class scores.

    Returns:
        dict: ``onnx``, ``max_abs_diff``, ``atol``, ``labels`` and ``ok``.
    """
    import mmcv
    from mmdeploy.apis import build_task_processor, torch2onnx
    from mmdeploy.utils import get_input_shape, get_onnx_config, load_config
    from mmengine.registry import init_default_scope

    deploy_cfg, model_cfg = load_config(deploy_cfg, model_cfg)
    os.makedirs(work_dir, exist_ok=True)
    if img is None:
        img = osp.join(work_dir, 'demo.png')
        mmcv.imwrite(load_image(), img)
    if not checkpoint or checkpoint.lower() == 'none':
        # MMDeploy and the reference must see the same random weights
        init_default_scope(model_cfg.get('default_scope', 'mmpretrain'))
        checkpoint = osp.join(work_dir, 'random_init.pth')
        torch.save({'state_dict': build_classifier(model_cfg).state_dict()},
                   checkpoint)
    save_file = get_onnx_config(deploy_cfg)['save_file']
    # MMDeploy's steps edit the configs they get: give each its own copy
    with torchscript_onnx_exporter():
        torch2onnx(img, work_dir, save_file, copy.deepcopy(deploy_cfg),
                   copy.deepcopy(model_cfg), checkpoint, device)
    onnx_file = osp.join(work_dir, save_file)
    if dump_info:
        from mmdeploy.backend.sdk.export_info import export2SDK
        export2SDK(copy.deepcopy(deploy_cfg), copy.deepcopy(model_cfg),
                   work_dir, pth=checkpoint, device=device)
    task = build_task_processor(copy.deepcopy(model_cfg),
                                copy.deepcopy(deploy_cfg), device)
    outputs = []
    for model in (task.build_backend_model([onnx_file]),
                  build_classifier(copy.deepcopy(model_cfg), checkpoint)):
        # test_step writes the predictions into the data samples: fresh input
        data, _ = task.create_input(img, get_input_shape(deploy_cfg))
        with torch.no_grad():
            samples = model.test_step(data)
        outputs.append((np.stack([s.pred_score.float().cpu().numpy()
                                  for s in samples]),
                        [int(s.pred_label) for s in samples]))
    diff = float(np.abs(outputs[0][0] - outputs[1][0]).max())
    return dict(onnx=onnx_file, max_abs_diff=diff, atol=atol,
                labels=(outputs[0][1], outputs[1][1]), ok=diff <= atol)

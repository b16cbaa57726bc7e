"""Deploy an nfnet_mm classifier with MMDeploy 1.3.1 (onnxruntime backend).

MMDeploy 1.3.1 calls ``torch.onnx.export`` without ``dynamo=``; on torch >= 2.9
that selects the dynamo exporter, which MMDeploy's rewriters do not support
(and which needs ``onnxscript``). This entry point puts the TorchScript
exporter in effect in every process of the run
(:mod:`nfnet_mm.utils.onnx_export`: the wrapper here, and
``NFNET_MM_ONNX_EXPORTER=torchscript`` in the environment for any process
MMDeploy spawns, which imports ``nfnet_mm`` through the configs'
``custom_imports``), then runs MMDeploy's own pipeline:

1. ``mmdeploy.apis.torch2onnx`` (MMDeploy builds the model, calls
   ``backbone.switch_to_deploy()``, which folds the weight standardisation,
   applies its rewriters and exports) -> ``WORK_DIR/end2end.onnx``;
2. the onnxruntime backend (for it the ONNX file is the backend model):
   MMDeploy's backend classifier runs on IMG and is compared with the
   PyTorch model (not folded); the max abs difference of the class scores
   must be <= ``--atol`` (default 1e-4), else the exit status is 1;
3. ``--dump-info``: MMDeploy's SDK meta files (deploy.json, pipeline.json,
   detail.json).

Usage::

    python tools/deploy/mmdeploy.py DEPLOY_CFG MODEL_CFG CHECKPOINT [IMG] \\
        --work-dir DIR [--device cpu] [--dump-info] [--atol 1e-4]

``CHECKPOINT`` may be ``none`` (random weights, for smoke tests); ``IMG``
defaults to the first Fashion-MNIST test image.
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
from typing import Optional, Sequence

# This file is called mmdeploy.py: keep its folder off sys.path so that
# ``import mmdeploy`` finds the package, not this script.
_HERE = osp.dirname(osp.abspath(__file__))
sys.path[:] = [p for p in sys.path if osp.abspath(p or os.curdir) != _HERE]

from nfnet_mm.utils.onnx_export import (ONNX_EXPORTER_ENV,  # noqa: E402
                                        use_torchscript_onnx_exporter)

__all__ = ['deploy', 'main']


def _load_export_tool():
    import importlib.util
    name = 'nfnet_export_onnx'
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, osp.join(_HERE, 'export_onnx.py'))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _scores(samples):
    import numpy as np
    return np.stack([s.pred_score.detach().cpu().float().numpy()
                     for s in samples])


def deploy(deploy_cfg: str,
           model_cfg: str,
           checkpoint: Optional[str],
           work_dir: str,
           img: Optional[str] = None,
           device: str = 'cpu',
           dump_info: bool = False,
           atol: float = 1e-4) -> dict:
    """Export with MMDeploy and check the onnxruntime backend model.

    Returns:
        dict: ``onnx`` (path), ``max_abs_diff`` of the class scores,
        ``labels`` (backend, PyTorch), ``ok``.
    """
    os.environ[ONNX_EXPORTER_ENV] = 'torchscript'  # for spawned processes
    use_torchscript_onnx_exporter()
    import nfnet_mm  # noqa: F401  (registers our modules)
    import mmcv
    from mmdeploy.apis import build_task_processor, torch2onnx
    from mmdeploy.utils import get_input_shape, get_onnx_config, load_config

    export_tool = _load_export_tool()
    deploy_cfg_obj, model_cfg_obj = load_config(deploy_cfg, model_cfg)
    ckpt = None if not checkpoint or checkpoint.lower() == 'none' else (
        checkpoint)
    os.makedirs(work_dir, exist_ok=True)
    if img is None:
        img = osp.join(work_dir, 'demo.png')
        mmcv.imwrite(export_tool.load_image(), img)
    save_file = get_onnx_config(deploy_cfg_obj)['save_file']

    if ckpt is None:
        # MMDeploy and the reference must see the same random weights
        import torch
        from mmengine.registry import init_default_scope
        init_default_scope(model_cfg_obj.get('default_scope', 'mmpretrain'))
        ref = export_tool.build_classifier(model_cfg_obj, None)
        ckpt = osp.join(work_dir, 'random_init.pth')
        torch.save({'state_dict': ref.state_dict()}, ckpt)

    # MMDeploy's steps edit the configs they get: give each its own copy
    torch2onnx(img, work_dir, save_file, copy.deepcopy(deploy_cfg_obj),
               copy.deepcopy(model_cfg_obj), ckpt, device)
    onnx_file = osp.join(work_dir, save_file)
    if dump_info:
        from mmdeploy.backend.sdk.export_info import export2SDK
        export2SDK(copy.deepcopy(deploy_cfg_obj),
                   copy.deepcopy(model_cfg_obj), work_dir, pth=ckpt,
                   device=device)

    # onnxruntime backend vs the PyTorch model (not folded)
    task = build_task_processor(copy.deepcopy(model_cfg_obj),
                                copy.deepcopy(deploy_cfg_obj), device)
    backend_model = task.build_backend_model([onnx_file])
    reference = export_tool.build_classifier(copy.deepcopy(model_cfg_obj),
                                             ckpt)
    input_shape = get_input_shape(deploy_cfg_obj)
    import numpy as np
    import torch
    outputs = []
    for model in (backend_model, reference):
        # test_step writes the predictions into the data samples: fresh input
        data, _ = task.create_input(img, input_shape)
        with torch.no_grad():
            samples = model.test_step(data)
        outputs.append((_scores(samples),
                        [int(s.pred_label) for s in samples]))
    (backend_scores, backend_labels), (torch_scores, torch_labels) = outputs
    diff = float(np.abs(backend_scores - torch_scores).max())
    labels = (backend_labels, torch_labels)
    return dict(onnx=onnx_file, max_abs_diff=diff, atol=atol, labels=labels,
                ok=diff <= atol)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='MMDeploy (onnxruntime) for nfnet_mm with the '
        'TorchScript ONNX exporter.')
    parser.add_argument('deploy_cfg', help='e.g. configs/deploy/'
                        'classification_onnxruntime_static.py')
    parser.add_argument('model_cfg', help='model config')
    parser.add_argument('checkpoint', help="checkpoint ('none': random)")
    parser.add_argument('img', nargs='?', help='image used to export and '
                        'check (default: a Fashion-MNIST test image)')
    parser.add_argument('--work-dir', required=True)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dump-info', action='store_true',
                        help='write the MMDeploy SDK meta files')
    parser.add_argument('--atol', type=float, default=1e-4)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    report = deploy(args.deploy_cfg, args.model_cfg, args.checkpoint,
                    args.work_dir, args.img, args.device, args.dump_info,
                    args.atol)
    print(json.dumps(report, indent=2))
    if not report['ok']:
        print(f'ERROR: onnxruntime backend differs from PyTorch by '
              f'{report["max_abs_diff"]:.3g} > {args.atol:g}',
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

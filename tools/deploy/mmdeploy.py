"""Deploy an nfnet_mm classifier with MMDeploy 1.3.1 (onnxruntime backend).

Runs MMDeploy's ``torch2onnx`` in this process with the TorchScript ONNX
exporter (torch >= 2.9 defaults to the dynamo exporter, which MMDeploy's
rewriters do not support), optionally writes MMDeploy's SDK meta files, and
compares MMDeploy's onnxruntime backend model with the PyTorch model: the
exit status is 1 when the class scores differ by more than ``--atol``.

Usage::

    python tools/deploy/mmdeploy.py DEPLOY_CFG MODEL_CFG CHECKPOINT [IMG] \\
        --work-dir DIR [--device cpu] [--dump-info] [--atol 1e-4]

``CHECKPOINT`` may be ``none`` (random weights, for smoke tests); ``IMG``
defaults to ``demo/demo.png`` (a Fashion-MNIST test image).
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
from typing import Optional

# This file is called mmdeploy.py: keep its folder off sys.path so that
# ``import mmdeploy`` finds the package, not this script.
_HERE = osp.dirname(osp.abspath(__file__))
sys.path[:] = [p for p in sys.path if osp.abspath(p or os.curdir) != _HERE]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from nfnet_mm.compat import enable_safe_checkpoints  # noqa: E402
from nfnet_mm.compat import torchscript_onnx_exporter  # noqa: E402
from nfnet_mm.deploy import DEFAULT_ATOL, build_classifier  # noqa: E402
from nfnet_mm.utils.checkpoint import CheckpointError  # noqa: E402

DEMO_IMAGE = osp.normpath(osp.join(_HERE, '..', '..', 'demo', 'demo.png'))


def deploy_with_mmdeploy(deploy_cfg: str,
                         model_cfg: str,
                         checkpoint: Optional[str],
                         work_dir: str,
                         img: str,
                         device: str = 'cpu',
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
        img (str): Image file.
        dump_info (bool): Write the SDK meta files. Defaults to False.
        atol (float): Allowed max abs difference of the class scores.

    Returns:
        dict: ``onnx``, ``max_abs_diff``, ``atol``, ``labels`` and ``ok``.
    """
    from mmdeploy.apis import build_task_processor, torch2onnx
    from mmdeploy.utils import get_input_shape, get_onnx_config, load_config
    from mmengine.registry import init_default_scope

    deploy_cfg, model_cfg = load_config(deploy_cfg, model_cfg)
    os.makedirs(work_dir, exist_ok=True)
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
        export2SDK(
            copy.deepcopy(deploy_cfg),
            copy.deepcopy(model_cfg),
            work_dir,
            pth=checkpoint,
            device=device)
    task = build_task_processor(
        copy.deepcopy(model_cfg), copy.deepcopy(deploy_cfg), device)
    outputs = []
    for model in (task.build_backend_model([onnx_file]),
                  build_classifier(copy.deepcopy(model_cfg), checkpoint)):
        # test_step writes the predictions into the data samples: fresh input
        data, _ = task.create_input(img, get_input_shape(deploy_cfg))
        with torch.no_grad():
            samples = model.test_step(data)
        outputs.append(
            (np.stack([s.pred_score.float().cpu().numpy() for s in samples]),
             [int(s.pred_label) for s in samples]))
    diff = float(np.abs(outputs[0][0] - outputs[1][0]).max())
    return dict(
        onnx=onnx_file,
        max_abs_diff=diff,
        atol=atol,
        labels=(outputs[0][1], outputs[1][1]),
        ok=diff <= atol)


if __name__ == '__main__':
    parser = argparse.ArgumentParser(
        description='MMDeploy (onnxruntime) for nfnet_mm with the '
        'TorchScript ONNX exporter.')
    parser.add_argument(
        'deploy_cfg',
        help='e.g. configs/deploy/'
        'classification_onnxruntime_static.py')
    parser.add_argument('model_cfg', help='model config')
    parser.add_argument('checkpoint', help="checkpoint ('none': random)")
    parser.add_argument(
        'img',
        nargs='?',
        default=DEMO_IMAGE,
        help='image used to export and check (default: '
        'demo/demo.png)')
    parser.add_argument('--work-dir', required=True)
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--dump-info',
        action='store_true',
        help='write the MMDeploy SDK meta files')
    parser.add_argument('--atol', type=float, default=DEFAULT_ATOL)
    args = parser.parse_args()
    enable_safe_checkpoints()  # training checkpoints load weights-only
    try:
        report = deploy_with_mmdeploy(args.deploy_cfg, args.model_cfg,
                                      args.checkpoint, args.work_dir, args.img,
                                      args.device, args.dump_info, args.atol)
    except CheckpointError as err:
        sys.exit(f'ERROR: {err}')
    print(json.dumps(report, indent=2))
    if not report['ok']:
        sys.exit(f'ERROR: onnxruntime backend differs from PyTorch by '
                 f'{report["max_abs_diff"]:.3g} > {args.atol:g}')

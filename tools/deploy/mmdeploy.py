"""Deploy an nfnet_mm classifier with MMDeploy 1.3.1 (onnxruntime backend).

Runs MMDeploy's ``torch2onnx`` in this process with the TorchScript ONNX
exporter (torch >= 2.9 defaults to the dynamo exporter, which MMDeploy's
rewriters do not support), optionally writes MMDeploy's SDK meta files, and
compares MMDeploy's onnxruntime backend model with the PyTorch model: the
exit status is 1 when the class scores differ by more than ``--atol``. See
:func:`nfnet_mm.deploy.deploy_with_mmdeploy`.

Usage::

    python tools/deploy/mmdeploy.py DEPLOY_CFG MODEL_CFG CHECKPOINT [IMG] \\
        --work-dir DIR [--device cpu] [--dump-info] [--atol 1e-4]

``CHECKPOINT`` may be ``none`` (random weights, for smoke tests); ``IMG``
defaults to the first Fashion-MNIST test image.
"""
import argparse
import json
import os
import os.path as osp
import sys

# This file is called mmdeploy.py: keep its folder off sys.path so that
# ``import mmdeploy`` finds the package, not this script.
_HERE = osp.dirname(osp.abspath(__file__))
sys.path[:] = [p for p in sys.path if osp.abspath(p or os.curdir) != _HERE]

import nfnet_mm  # noqa: E402
from nfnet_mm.deploy import deploy_with_mmdeploy  # noqa: E402
from nfnet_mm.utils.checkpoint import CheckpointError  # noqa: E402

if __name__ == '__main__':
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
    args = parser.parse_args()
    nfnet_mm.enable_safe_checkpoints()  # training checkpoints load weights-only
    try:
        report = deploy_with_mmdeploy(
            args.deploy_cfg, args.model_cfg, args.checkpoint, args.work_dir,
            args.img, args.device, args.dump_info, args.atol)
    except CheckpointError as err:
        sys.exit(f'ERROR: {err}')
    print(json.dumps(report, indent=2))
    if not report['ok']:
        sys.exit(f'ERROR: onnxruntime backend differs from PyTorch by '
                 f'{report["max_abs_diff"]:.3g} > {args.atol:g}')

"""Export an nfnet_mm classifier to ONNX and check it with onnxruntime.

Builds the model from CONFIG, loads CHECKPOINT (``none``: keep the random
init, for smoke tests), folds the weight standardisation into plain conv
weights (``backbone.switch_to_deploy()``; ``--no-fold`` keeps it), exports
with the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) and
runs onnxruntime on a real image, preprocessed by the config's test
pipeline and data preprocessor: ``--img PATH``, by default ``demo/demo.png``
(a Fashion-MNIST test image). The reference is the PyTorch model before
folding.
It prints the max abs difference of the logits (and fails above ``--atol``,
default 1e-4) and the op-type histogram of the graph.

Usage::

    python tools/deploy/export_onnx.py CONFIG CHECKPOINT --out model.onnx \\
        [--dynamic-batch] [--opset 17] [--no-fold] [--img PATH] \\
        [--shape H W] [--json FILE]

Latency (folded against unfolded) is the lab's: ``python -m
lab.benchmark_onnx``.
"""
import argparse
import json
import os.path as osp
import sys
from typing import Optional, Sequence

from nfnet_mm.compat import enable_safe_checkpoints
from nfnet_mm.deploy import DEFAULT_ATOL, ExportError, export_and_check
from nfnet_mm.utils.checkpoint import CheckpointError

DEMO_IMAGE = osp.join(
    osp.dirname(osp.abspath(__file__)), '..', '..', 'demo', 'demo.png')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export an nfnet_mm classifier to ONNX (TorchScript '
        'exporter) and check it with onnxruntime.')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help="checkpoint file ('none': random)")
    parser.add_argument('--out', required=True, help='output .onnx file')
    parser.add_argument(
        '--dynamic-batch', action='store_true', help='dynamic batch axis')
    parser.add_argument(
        '--opset', type=int, default=17, help='ONNX opset (default 17)')
    parser.add_argument(
        '--no-fold',
        action='store_true',
        help='keep the weight standardisation in the graph')
    parser.add_argument(
        '--img',
        default=osp.normpath(DEMO_IMAGE),
        help='image to check with (default: demo/demo.png)')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='resize the preprocessed input to H W')
    parser.add_argument(
        '--atol',
        type=float,
        default=DEFAULT_ATOL,
        help='max allowed abs difference (default 1e-4)')
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='onnxruntime intra-op threads')
    parser.add_argument('--json', help='write the report as JSON here')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    enable_safe_checkpoints()  # training checkpoints load weights-only
    try:
        report = export_and_check(
            args.config,
            args.checkpoint,
            args.out,
            img=args.img,
            fold=not args.no_fold,
            opset=args.opset,
            dynamic_batch=args.dynamic_batch,
            shape=args.shape,
            atol=args.atol,
            threads=args.threads)
    except (ExportError, CheckpointError, FileNotFoundError) as err:
        print(f'ERROR: {err}', file=sys.stderr)
        return 1
    print(f'Exported {report["onnx"]} (folded={report["folded"]}, opset '
          f'{report["opset"]}, input {report["input_shape"]})')
    print(f'max abs difference onnxruntime vs PyTorch: '
          f'{report["max_abs_diff"]:.3e} (allowed {report["atol"]:g})')
    print(f'ops ({report["num_nodes"]} nodes): ' +
          ', '.join(f'{k}: {v}' for k, v in report['ops'].items()))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())

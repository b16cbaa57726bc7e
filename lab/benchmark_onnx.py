"""onnxruntime latency of an nfnet_mm classifier, WS folded vs not folded.

A command line over :func:`lab.benchmarks.measures.onnx_folding`: each
graph with onnxruntime's graph optimisations on (they constant-fold an
unfolded graph's standardisation at load time) and off, interleaved, median
after 2 warm-up runs, plus the session creation time.

Usage::

    python -m lab.benchmark_onnx CONFIG CHECKPOINT \\
        [--shape H W] [--batch B] [--runs N] [--threads T] [--json FILE]
"""
import argparse
import sys

import nfnet_mm
from lab.benchmarks.harness import markdown_table, write_json
from lab.benchmarks.measures import onnx_folding
from nfnet_mm.deploy import ExportError
from nfnet_mm.utils.checkpoint import CheckpointError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', help="checkpoint ('none': random)")
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--runs', type=int, default=10)
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='onnxruntime intra-op threads (default 1)')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--json', help='write the report here')
    args = parser.parse_args(argv)
    nfnet_mm.enable_safe_checkpoints(
    )  # training checkpoints load weights-only
    try:
        report = onnx_folding(args.config, args.checkpoint, args.shape,
                              args.batch, args.runs, args.threads, args.opset)
    except (ExportError, CheckpointError) as err:
        print(f'ERROR: {err}', file=sys.stderr)
        return 1
    print(
        markdown_table(
            ('graph', 'nodes', 'median ms', 'session creation ms'),
            [(k, r['num_nodes'], r.get('ms_per_step',
                                       r.get('error')), r['session_create_ms'])
             for k, r in report['results'].items()]))
    print(f"speed-up of folding (paired): {report['speedup_folded']:.2f}x, "
          f"{report['speedup_folded (ORT opt off)']:.2f}x with ORT opt off")
    write_json(args.json, report)
    return 0


if __name__ == '__main__':
    sys.exit(main())

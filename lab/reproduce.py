"""Reproduce the paper's Figure 2, its final-layer ablation and appendix
A.4's SAM claims at small scale on Fashion-MNIST.

Trains the arms of :mod:`lab.reproduction.sweep` (a small NF-ResNet, its
batch-norm twin, AGC over a lambda grid, SAM's ascents; 3 seeds), writes
``results.json`` (resumable: finished runs are kept and skipped) and the PNG
plots into ``--out``. See docs/reproduction.md.

Examples::

    # the sweep of docs/reproduction.md: two processes on the 2-core machine
    python -m lab.reproduce --shard 0/2 & python -m lab.reproduce --shard 1/2
    # on a GPU: full 28 px, 4x the epochs, one process
    python -m lab.reproduce --scale gpu --out work_dirs/reproduction_gpu
    # CI smoke run: a few hundred images, every arm (about 30 s)
    python -m lab.reproduce --quick --out work_dirs/reproduction_quick
"""
import argparse
import json
import os.path as osp

from lab.reproduction.plots import plot_results, summary_tables
from lab.reproduction.sweep import FULL, GPU, QUICK, run_sweep
from nfnet_mm.datasets.fashion_mnist import DEFAULT_FASHION_MNIST_ROOT

SCALES = dict(cpu=FULL, gpu=GPU, quick=QUICK)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--out',
        default='docs/reproduction',
        help='folder of results.json and the plots')
    parser.add_argument(
        '--scale',
        choices=sorted(SCALES),
        default='cpu',
        help='cpu: docs/reproduction.md; gpu: 28 px and 4x the epochs; '
        'quick: the CI smoke run')
    parser.add_argument(
        '--quick', action='store_true', help='the same as --scale quick')
    parser.add_argument('--data-root', default=DEFAULT_FASHION_MNIST_ROOT)
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads per process (one per core and process)')
    parser.add_argument(
        '--plots-only',
        action='store_true',
        help='redraw the plots from results.json without training')
    parser.add_argument(
        '--shard',
        default='0/1',
        metavar='K/N',
        help='this process takes shard K of N (N processes share one '
        'sweep and --out)')
    args = parser.parse_args(argv)
    shard = tuple(int(v) for v in args.shard.split('/') if v.isdigit())
    if len(shard) != 2 or not 0 <= shard[0] < shard[1] or args.shard.count(
            '/') != 1:
        parser.error(
            f'--shard must be K/N with 0 <= K < N, got {args.shard!r}')
    setup = dict(
        SCALES['quick' if args.quick else args.scale],
        data_root=args.data_root,
        threads=args.threads)
    if not args.plots_only:
        run_sweep(setup, args.out, shard)
    for path in plot_results(args.out):
        print('wrote', path)
    with open(osp.join(args.out, 'results.json')) as f:
        print(summary_tables(json.load(f)))


if __name__ == '__main__':
    main()

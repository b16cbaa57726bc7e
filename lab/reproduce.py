"""Reproduce the paper's Figure 2 (AGC and batch size) at small scale on
Fashion-MNIST.

Trains the ``bn``, ``nf`` and ``nf_agc`` arms of :mod:`lab.reproduction.agc`
over batch sizes and clipping thresholds, writes ``results.json`` (resumable:
finished runs are kept and skipped) and the PNG plots into ``--out``. See
docs/reproduction.md.

Examples::

    # the full sweep of docs/reproduction.md (54 min on the shared 2-core CPU
    # machine)
    nice -n 5 python -m lab.reproduce --out docs/reproduction
    # CI smoke run: tiny subsets, 2 batch sizes, 1 epoch (under a minute)
    python -m lab.reproduce --quick --out work_dirs/agc_quick
"""
import argparse

from lab.reproduction.agc import FULL, QUICK, plot_results, run_sweep
from nfnet_mm.datasets.fashion_mnist import DEFAULT_FASHION_MNIST_ROOT


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--out',
        default='docs/reproduction',
        help='folder of results.json and the plots')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='tiny subsets, 2 batch sizes, 1 epoch (CI smoke run)')
    parser.add_argument('--data-root', default=DEFAULT_FASHION_MNIST_ROOT)
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads (on a shared 2-core machine one thread '
        'spends far less CPU time than two)')
    parser.add_argument(
        '--plots-only',
        action='store_true',
        help='redraw the plots from results.json without training')
    parser.add_argument(
        '--shard',
        default='0/1',
        metavar='K/N',
        help='run every N-th planned run from the K-th (N processes '
        'can share one sweep and --out)')
    args = parser.parse_args(argv)
    shard = tuple(int(v) for v in args.shard.split('/') if v.isdigit())
    if len(shard) != 2 or not 0 <= shard[0] < shard[1] or args.shard.count(
            '/') != 1:
        parser.error(
            f'--shard must be K/N with 0 <= K < N, got {args.shard!r}')
    setup = dict(
        QUICK if args.quick else FULL,
        data_root=args.data_root,
        threads=args.threads)
    if not args.plots_only:
        run_sweep(setup, args.out, shard)
    for path in plot_results(args.out):
        print('wrote', path)


if __name__ == '__main__':
    main()

"""Data-loader throughput of one worker for a MixupCutMixDataset config, by
flow and stage (:mod:`lab.benchmarks.dataloader`), e.g. ``python
lab/benchmark_dataloader.py configs/nfnet/nfnet-f0_8xb128_in1k.py``.
"""
import argparse

from mmengine.config import Config

import nfnet_mm  # noqa: F401
from lab.benchmarks.dataloader import dataloader_throughput
from lab.benchmarks.harness import markdown_table, write_json


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--batches', type=int, default=8)
    parser.add_argument('--images', type=int, default=64)
    parser.add_argument('--out', help='also write the results as JSON')
    args = parser.parse_args()
    try:
        rows = dataloader_throughput(
            Config.fromfile(args.config), args.batch_size, args.batches,
            args.images)
    except ValueError as err:
        parser.error(f'{args.config}: {err}')
    stages = ['decode', 'crop/resize', 'mix', 'randaugment', 'pack']
    print(
        markdown_table(
            ['flow', 'images per CPU s'] + [f'{s} ms' for s in stages],
            [[r['flow'], f"{r['images_per_s']:.0f}"] +
             [f"{r['ms_per_image'].get(s, 0.):.2f}" for s in stages]
             for r in rows]),
        end='')
    write_json(args.out, rows)


if __name__ == '__main__':
    main()

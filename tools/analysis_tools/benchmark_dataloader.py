"""Data-loader throughput of one worker for a MixupCutMixDataset config.

Times whole batches (``__getitems__``, what one loader worker runs) of
synthetic JPEGs in one thread, in CPU time (little changed by a shared
machine), split by stage, for four flows: ``old`` (no mixing in the loader),
``new`` (the configured flow: distinct partners, RandAugment after mixing),
``new-batch`` (partners from within the batch) and ``ra-first`` (RandAugment
before mixing)::

    python tools/analysis_tools/benchmark_dataloader.py \\
        configs/nfnet/nfnet-f0_8xb128_in1k.py --batches 8
"""
import argparse
import collections
import tempfile
import time

import cv2
import mmcv
import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import nfnet_mm  # noqa: F401
from mmpretrain.registry import DATASETS
from nfnet_mm.benchmarks.harness import markdown_table, write_json

FLOWS = {
    'old': dict(mix_prob=0.),
    'new': dict(),
    'new-batch': dict(partners='batch'),
    'ra-first': dict(augment_before_mix=True),
}
STAGES = {'LoadImageFromFile': 'decode', 'RandomResizedCrop': 'crop/resize',
          'RandomFlip': 'crop/resize'}


def _timed(name, fn, totals):
    """``fn``, adding the CPU time of each call to ``totals[name]``."""

    def call(*args, **kwargs):
        start = time.process_time()
        out = fn(*args, **kwargs)
        totals[name] += time.process_time() - start
        return out
    return call


def write_jpegs(root, num, size=(375, 500)):
    """``num`` random 500 x 375 JPEGs that compress like photographs."""
    rng = np.random.RandomState(0)
    for i in range(num):
        small = rng.randint(0, 256, (size[0] // 25, size[1] // 25, 3))
        img = mmcv.imresize(small.astype(np.uint8), size[::-1],
                            interpolation='bicubic')
        img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255)
        mmcv.imwrite(img.astype(np.uint8), f'{root}/class{i % 2}/{i}.jpg')


def measure(cfg, root, flow, batch_size, batches):
    """Images per CPU second of one process and CPU ms per image by stage."""
    dataset = dict(cfg.train_dataloader.dataset, **FLOWS[flow])
    if dataset.get('type') != 'MixupCutMixDataset':
        raise SystemExit('benchmark_dataloader: the config\'s training '
                         'dataset must be a MixupCutMixDataset, got '
                         f"{dataset.get('type')!r}.")
    dataset['dataset'] = dict(type='CustomDataset', data_root=root,
                              pipeline=dataset['dataset']['pipeline'])
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(dataset)
    ds.full_init()
    totals = collections.defaultdict(float)
    steps = ds.dataset.pipeline.transforms
    for i, t in enumerate(steps):
        steps[i] = _timed(STAGES.get(type(t).__name__, 'other'), t, totals)
    ds._mix = _timed('mix', ds._mix, totals)
    ds.augment = _timed('randaugment', ds.augment, totals)
    ds.pack = _timed('pack', ds.pack, totals)
    np.random.seed(0)
    ds.__getitems__(list(range(batch_size)))  # warm-up
    totals.clear()
    start = time.process_time()
    for b in range(batches):
        ids = np.random.randint(len(ds), size=batch_size).tolist()
        ds.__getitems__(ids)
    seconds = time.process_time() - start
    images = batch_size * batches
    return dict(flow=flow, images_per_s=images / seconds,
                ms_per_image={k: 1e3 * v / images for k, v in totals.items()})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--batches', type=int, default=8)
    parser.add_argument('--images', type=int, default=64)
    parser.add_argument('--out', help='also write the results as JSON')
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(0)  # as MMEngine sets it in loader workers
    cfg = Config.fromfile(args.config)
    with tempfile.TemporaryDirectory() as root:
        write_jpegs(root, args.images)
        rows = [measure(cfg, root, flow, args.batch_size, args.batches)
                for flow in FLOWS]
    stages = ['decode', 'crop/resize', 'mix', 'randaugment', 'pack']
    print(markdown_table(
        ['flow', 'images per CPU s'] + [f'{s} ms' for s in stages],
        [[r['flow'], f"{r['images_per_s']:.0f}"] +
         [f"{r['ms_per_image'].get(s, 0.):.2f}" for s in stages]
         for r in rows]), end='')
    write_json(args.out, rows)


if __name__ == '__main__':
    main()

"""Data-loader CPU time by stage of whole batches (``__getitems__``) of
synthetic JPEGs for four flows (:data:`FLOWS`) of a ``MixupCutMixDataset``
config: ``new`` is the configured one, ``old`` mixes nothing, ``new-batch``
pairs within the batch."""
import collections
import tempfile
import time
from typing import Dict, List

import cv2
import mmcv
import numpy as np
import torch
from mmengine.registry import DefaultScope
from mmpretrain.registry import DATASETS

FLOWS = {
    'old': dict(mix_prob=0.),
    'new': dict(),
    'new-batch': dict(partners='batch'),
    'ra-first': dict(augment_before_mix=True)
}
STAGES = {
    'LoadImageFromFile': 'decode',
    'RandomResizedCrop': 'crop/resize',
    'RandomFlip': 'crop/resize'
}


def _timed(name, fn, totals, calls):
    """``fn``, adding each call's CPU time to ``totals[name]``, counted."""

    def call(*args, **kwargs):
        start = time.process_time()
        out = fn(*args, **kwargs)
        totals[name] += time.process_time() - start
        calls[name] += 1
        return out

    return call


def write_jpegs(root: str, num: int, size=(375, 500)) -> None:
    """``num`` random 500 x 375 JPEGs that compress like photographs."""
    rng = np.random.RandomState(0)
    for i in range(num):
        small = rng.randint(0, 256, (size[0] // 25, size[1] // 25, 3))
        img = mmcv.imresize(
            small.astype(np.uint8), size[::-1], interpolation='bicubic')
        img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255)
        mmcv.imwrite(img.astype(np.uint8), f'{root}/class{i % 2}/{i}.jpg')


def measure_flow(cfg, root: str, flow: str, batch_size: int,
                 batches: int) -> Dict:
    """Images per CPU second, and CPU ms and calls per image by stage, of
    ``flow`` of ``cfg``'s training dataset over the JPEGs in ``root``."""
    dataset = dict(cfg.train_dataloader.dataset, **FLOWS[flow])
    if dataset.get('type') != 'MixupCutMixDataset':
        raise ValueError('the config\'s training dataset must be a '
                         f"MixupCutMixDataset, got {dataset.get('type')!r}")
    dataset['dataset'] = dict(
        type='CustomDataset',
        data_root=root,
        pipeline=dataset['dataset']['pipeline'])
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(dataset)
    ds.full_init()
    totals, calls = collections.defaultdict(float), collections.Counter()
    steps = ds.dataset.pipeline.transforms
    for i, t in enumerate(steps):
        steps[i] = _timed(
            STAGES.get(type(t).__name__, 'other'), t, totals, calls)
    for name, stage in (('_mix', 'mix'), ('augment', 'randaugment'), ('pack',
                                                                      'pack')):
        setattr(ds, name, _timed(stage, getattr(ds, name), totals, calls))
    np.random.seed(0)
    ds.__getitems__(list(range(batch_size)))  # warm-up
    totals.clear()
    calls.clear()
    start = time.process_time()
    for _ in range(batches):
        ds.__getitems__(np.random.randint(len(ds), size=batch_size).tolist())
    seconds, images = time.process_time() - start, batch_size * batches
    return dict(
        flow=flow,
        images_per_s=images / seconds,
        ms_per_image={
            k: 1e3 * v / images
            for k, v in totals.items()
        },
        calls_per_image={
            k: v / images
            for k, v in calls.items()
        })


def dataloader_throughput(cfg,
                          batch_size: int = 32,
                          batches: int = 8,
                          images: int = 64) -> List[Dict]:
    """:func:`measure_flow` of every flow on ``images`` synthetic JPEGs, one
    torch and OpenCV thread (as MMEngine sets a loader worker; restored
    after)."""
    threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(0)
    try:
        with tempfile.TemporaryDirectory() as root:
            write_jpegs(root, images)
            return [
                measure_flow(cfg, root, flow, batch_size, batches)
                for flow in FLOWS
            ]
    finally:
        torch.set_num_threads(threads[0])
        cv2.setNumThreads(threads[1])

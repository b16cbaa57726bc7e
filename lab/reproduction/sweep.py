"""The paper's Figure 2, section 4.1's final-layer ablation and appendix
A.4's SAM claims, at small scale on Fashion-MNIST.

Every run trains :data:`NET` (a small NF-ResNet) with MMEngine's ``Runner``:
Nesterov SGD, ``lr = 0.1 * B / 256``, warm-up and cosine decay, the same
epochs at every batch size; it reports the test top-1 (no EMA). The arms:

- ``nf``: no clipping; ``bn``: its batch-normalised twin
  (:func:`to_batchnorm`);
- ``nf_agc``: AGC at ``clipping`` (the final layer excluded unless
  ``clip_head``); ``clipping='best'`` is resolved from the lambda grid at the
  same batch size (or the nearest gridded one) when the run starts;
- ``sam``: the ``nf`` run with SAM's ascent ``none``, ``full``, ``0.2`` or
  ``other`` (:mod:`lab.reproduction.sam`), with its step time over a plain
  step;
- ``plateau``: ``bn`` at the smallest batch, ``plateau_epochs`` long, tested
  after every epoch.

A run diverged if a training loss was not finite (training stops there) or
its top-1 is below 20%.
"""
import fcntl
import json
import math
import os
import os.path as osp
import tempfile
import time
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmpretrain.registry import MODELS

from lab.reproduction.sam import (ASCENTS, OtherBatchSAMClassifier,
                                  sam_optim_wrapper, step_time_ratio)
from nfnet_mm.models.backbones.nfnet import NFBlock
from nfnet_mm.models.layers.ws_conv import ScaledWSConv2d
from nfnet_mm.utils.checkpoint import atomic_write

__all__ = [
    'NET', 'FULL', 'GPU', 'QUICK', 'plan_runs', 'build_model', 'to_batchnorm',
    'run_sweep', 'load_results'
]

#: The network of every arm: ``NFResNet`` (timm's layout: ReLU, bottlenecks
#: of a quarter width, zero-initialised last gain) with a 3x3 stride-1 stem
#: and one block per stage; 14 x 14 input, stages at 14, 7, 4, 2 px.
NET = dict(
    name='nf_resnet_s',
    arch=dict(
        depths=[1, 1, 1, 1],
        widths=[32, 64, 128, 256],
        stem_widths=[16],
        stem_strides=[1],
        stem_kernel=3,
        stem_pool=False,
        strides=[1, 2, 2, 2]))
_BASE = dict(
    warmup_epochs=0.5,
    clippings=[0.01, 0.02, 0.04, 0.08, 0.16],
    seeds=[0, 1, 2],
    sam_rho=0.05)
#: The CPU sweep of docs/reproduction.md, its GPU scale and the CI smoke run.
FULL = dict(
    _BASE,
    img_size=14,
    epochs=4,
    plateau_epochs=12,
    train_size=None,
    test_size=None,
    batch_sizes=[256, 1024, 4096],
    grid_batch_sizes=[1024, 4096],
    sam_batch_size=256)
GPU = dict(FULL, img_size=28, epochs=16, plateau_epochs=48)
QUICK = dict(
    _BASE,
    img_size=14,
    epochs=1,
    plateau_epochs=2,
    train_size=384,
    test_size=128,
    batch_sizes=[32, 64, 128],
    grid_batch_sizes=[64, 128],
    clippings=[0.01, 0.16],
    seeds=[0, 1],
    sam_batch_size=32)
DIVERGED_TOP1 = 20.


def _name(run: dict) -> str:
    clip = run['clipping']
    return (f"{run['arm']}_b{run['batch_size']}" +
            (f'_{run["ascent"]}' if run['ascent'] else '') +
            ('' if clip is None else
             f'_lam{clip:g}' if clip != 'best' else '_best') +
            ('_cliphead' if run['clip_head'] else '') + f"_s{run['seed']}")


def plan_runs(setup: dict) -> List[dict]:
    """Every run of a sweep, those others wait for (the lambda grid) first.

    ``nf_agc`` at the best lambda: the grid run (seed 0) and the other seeds
    at a gridded batch size; all seeds elsewhere. The final-layer arm: at the
    largest batch size and its best lambda.
    """
    sizes, seeds = setup['batch_sizes'], setup['seeds']
    runs = [
        dict(arm='nf_agc', batch_size=b, clipping=c, seed=seeds[0])
        for b in setup['grid_batch_sizes'] for c in setup['clippings']
    ]
    runs += [
        dict(arm=arm, batch_size=b, seed=s) for b in sizes[::-1]
        for arm in ('bn', 'nf') for s in seeds
    ]
    runs += [
        dict(arm='sam', batch_size=setup['sam_batch_size'], ascent=a, seed=s)
        for a in ASCENTS for s in seeds
    ]
    runs.append(
        dict(
            arm='plateau',
            batch_size=sizes[0],
            seed=seeds[0],
            epochs=setup['plateau_epochs']))
    runs += [
        dict(arm='nf_agc', batch_size=b, clipping='best', seed=s)
        for b in sizes for s in seeds
        if b not in setup['grid_batch_sizes'] or s != seeds[0]
    ]
    runs += [
        dict(
            arm='nf_agc',
            batch_size=sizes[-1],
            clipping='best',
            clip_head=True,
            seed=s) for s in seeds
    ]
    for run in runs:
        run.setdefault('clipping', None)
        run.setdefault('clip_head', False)
        run.setdefault('ascent', None)
        run.setdefault('epochs', setup['epochs'])
        run['lr'] = 0.1 * run['batch_size'] / 256
        run['name'] = _name(run)
    return runs


def best_clipping(runs: List[dict], setup: dict,
                  batch_size: int) -> Tuple[Optional[float], List[str]]:
    """The grid's best lambda at ``batch_size`` (or the nearest gridded
    batch size; ties: the larger lambda), and the grid runs still missing."""
    grid = setup['grid_batch_sizes']
    near = min(grid, key=lambda b: (abs(math.log(b / batch_size)), b))
    want = {
        r['name']
        for r in plan_runs(setup) if r['batch_size'] == near
        and r['arm'] == 'nf_agc' and isinstance(r['clipping'], float)
    }
    done = [r for r in runs if r['name'] in want]
    missing = sorted(want - {r['name'] for r in done})
    if missing:
        return None, missing
    return max(done, key=lambda r: (r['top1'], r['clipping']))['clipping'], []


def to_batchnorm(model: nn.Module) -> nn.Module:
    """Turn an NF classifier into its batch-normalised twin, in place.

    Every ``ScaledWSConv2d`` (whose ``input_scale`` holds the gains gamma and
    beta) becomes ``Conv2d(bias=False) + BatchNorm2d`` whose scale starts at
    the conv's gain (timm's zero-initialised last gain is a zero-initialised
    BN scale); alpha and the output's gamma become 1. Layout and parameter
    count are unchanged.
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ScaledWSConv2d):
                if child._dynamic_same:
                    raise ValueError(
                        f'{name}: to_batchnorm needs static padding, got '
                        "'same' with stride; build the model with "
                        "padding='symmetric'")
                conv = nn.Conv2d(
                    child.in_channels,
                    child.out_channels,
                    child.kernel_size,
                    stride=child.stride,
                    padding=child.padding,
                    dilation=child.dilation,
                    groups=child.groups,
                    bias=False)
                norm = nn.BatchNorm2d(child.out_channels)
                with torch.no_grad():
                    norm.weight.copy_(child.gain)
                setattr(parent, name, nn.Sequential(conv, norm))
            elif isinstance(child, NFBlock):
                child.alpha = 1.
    model.backbone.out_scale = 1.
    return model


def build_model(arm: str, ascent: Optional[str] = None) -> nn.Module:
    """The classifier of one arm (``bn``, ``plateau``, ``nf``, ``nf_agc``
    or ``sam`` with its ``ascent``)."""
    cfg = dict(
        type='SAMImageClassifier' if arm == 'sam' else 'ImageClassifier',
        data_preprocessor=dict(
            num_classes=10, mean=[72.94], std=[90.02], to_rgb=False),
        backbone=dict(
            type='NFResNet',
            arch=NET['arch'],
            in_channels=1,
            out_indices=(-1, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='NFNetClsHead',
            num_classes=10,
            in_channels=NET['arch']['widths'][-1],
            loss=dict(type='CrossEntropyLoss'),
            topk=(1, )))
    if ascent == 'other':
        cfg.pop('type')
        return OtherBatchSAMClassifier(**cfg)
    model = MODELS.build(cfg)
    return to_batchnorm(model) if arm in ('bn', 'plateau') else model


class _Diverged(Exception):
    pass


class _Recorder(Hook):
    """Keep every training loss and test top-1; stop at a non-finite loss."""

    def __init__(self, name: str):
        self.name, self.losses, self.top1 = name, [], []

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        loss = float(outputs['loss'].detach())
        self.losses.append(loss if math.isfinite(loss) else None)
        if not math.isfinite(loss):
            raise _Diverged

    def after_val_epoch(self, runner, metrics=None):
        if metrics:
            self.top1.append(round(float(metrics['accuracy/top1']), 2))

    def after_train_epoch(self, runner):
        print(
            f'  {self.name}: epoch {runner.epoch + 1}, '
            f'last loss {self.losses[-1]:.4f}',
            flush=True)


def _dataloader(setup: dict, split: str, batch_size: int) -> dict:
    pipeline = [
        dict(
            type='Resize',
            scale=(setup['img_size'], ) * 2,
            keep_ratio=False,
            interpolation='area'),
        dict(type='PackInputs')
    ]
    return dict(
        batch_size=batch_size,
        num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=split == 'train'),
        dataset=dict(
            type='FashionMNISTIdx',
            data_root=setup['data_root'],
            split=split,
            test_mode=split == 'test',
            download=False,
            pipeline=pipeline,
            indices=setup[f'{split}_size'],
            serialize_data=False))


def train_one(run: dict, setup: dict, work_root: str) -> dict:
    """Train and test one run (``clipping`` resolved) with MMEngine's Runner;
    return its result entry."""
    epochs, warmup = run['epochs'], setup['warmup_epochs']
    agc = (
        dict(
            clipping=run['clipping'],
            eps=1e-3,
            exclude=[] if run['clip_head'] else ['head.fc.weight'])
        if run['arm'] == 'nf_agc' else None)
    optimizer = dict(
        type='SGD',
        lr=run['lr'],
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-5)
    optim_wrapper = (
        sam_optim_wrapper(run['ascent'], optimizer, setup['sam_rho'])
        if run['arm'] == 'sam' else dict(
            type='AGCOptimWrapper', agc=agc, optimizer=optimizer))
    optim_wrapper['paramwise_cfg'] = dict(
        bias_decay_mult=0.,
        norm_decay_mult=0.,
        custom_keys={'.gain': dict(decay_mult=0.)})
    recorder = _Recorder(run['name'])
    every_epoch = run['arm'] == 'plateau'
    runner = Runner(
        model=build_model(run['arm'], run['ascent']),
        work_dir=osp.join(work_root, run['name']),
        experiment_name=f"{run['name']}_{time.time_ns()}",
        train_dataloader=_dataloader(setup, 'train', run['batch_size']),
        val_dataloader=_dataloader(setup, 'test', 500),
        val_evaluator=dict(type='Accuracy', topk=(1, )),
        train_cfg=dict(
            by_epoch=True,
            max_epochs=epochs,
            val_begin=1 if every_epoch else epochs + 1),
        val_cfg=dict(),
        optim_wrapper=optim_wrapper,
        param_scheduler=[
            dict(
                type='LinearLR',
                start_factor=1e-3,
                by_epoch=True,
                begin=0,
                end=warmup,
                convert_to_iter_based=True),
            dict(
                type='CosineAnnealingLR',
                T_max=epochs - warmup,
                eta_min=0.,
                by_epoch=True,
                begin=warmup,
                end=epochs,
                convert_to_iter_based=True)
        ],
        default_hooks=dict(
            checkpoint=None, logger=dict(type='LoggerHook', interval=10**6)),
        custom_hooks=[recorder],
        randomness=dict(seed=run['seed']),
        default_scope='mmpretrain',
        log_level='WARNING')
    start, stopped = time.perf_counter(), False
    try:
        runner.train()
    except _Diverged:
        stopped = True
    top1 = recorder.top1[-1] if every_epoch and not stopped else float(
        runner.val()['accuracy/top1'])
    seconds = time.perf_counter() - start
    ratio = None
    if run['arm'] == 'sam' and not stopped:
        loader = iter(runner.train_dataloader)
        ratio = step_time_ratio(runner.model, runner.optim_wrapper,
                                [next(loader) for _ in range(3)])
    keys = ('name', 'arm', 'batch_size', 'lr', 'clipping', 'clip_head',
            'ascent', 'seed', 'epochs')
    return dict({k: run[k]
                 for k in keys},
                net=NET['name'],
                top1=round(top1, 2),
                diverged=stopped or top1 < DIVERGED_TOP1,
                step_time_ratio=ratio,
                seconds=round(seconds, 1),
                top1_per_epoch=recorder.top1 if every_epoch else None,
                train_loss=[
                    None if v is None else round(v, 5) for v in recorder.losses
                ])


def _same(setup: dict) -> dict:
    # where the data is and how many threads train it may differ
    return {
        k: v
        for k, v in setup.items() if k not in ('data_root', 'threads')
    }


def load_results(path: str, setup: Optional[dict] = None) -> dict:
    """The results file (empty if absent); ValueError if it holds another
    setup or network than ``setup`` and :data:`NET`."""
    if not osp.isfile(path):
        return dict(setup=setup, net=NET, runs=[])
    with open(path) as f:
        data = json.load(f)
    if setup is not None and (_same(data.get('setup') or {}) != _same(setup)
                              or data.get('net') != NET):
        raise ValueError(
            f'{path} holds a sweep with another setup '
            f"({data.get('setup')}); use another --out directory or "
            'delete the file to start over.')
    return data


def _add_result(path: str, setup: dict, result: dict) -> None:
    """Merge one run into the file (locked: shards may run at the same
    time)."""
    order = [run['name'] for run in plan_runs(setup)]
    lock = os.open(osp.dirname(path), os.O_RDONLY)  # the folder: no lock file
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = load_results(path, setup)
        data['runs'] = sorted(
            [r
             for r in data['runs'] if r['name'] != result['name']] + [result],
            key=lambda r: order.index(r['name']))
        with atomic_write(path, 'w') as f:
            json.dump(data, f, indent=1)
    finally:
        os.close(lock)


def _cost(run: dict) -> float:
    """A run's rough CPU cost, to balance the shards."""
    factor = {'full': 2., '0.2': 1.2, 'other': 1.2}.get(run['ascent'], 1.)
    return run['epochs'] * factor * (1.3 if run['arm'] in ('bn',
                                                           'plateau') else 1.)


def shard_runs(setup: dict, shard: Tuple[int, int]) -> List[dict]:
    """The runs of shard ``k`` of ``n``: the grid first, then the longest
    first, greedily to the least loaded shard; the runs needing the grid
    last. The same split on every call."""
    runs = plan_runs(setup)
    loads, mine = [0.] * shard[1], []
    first = [r for r in runs if r['clipping'] != 'best']
    grid = [r for r in first if r['arm'] == 'nf_agc']
    rest = sorted((r for r in first if r['arm'] != 'nf_agc'),
                  key=lambda r: -_cost(r))
    for run in grid + rest + [r for r in runs if r['clipping'] == 'best']:
        k = loads.index(min(loads))
        loads[k] += _cost(run)
        if k == shard[0]:
            mine.append(run)
    return mine


def run_sweep(setup: dict,
              out_dir: str,
              shard: Tuple[int, int] = (0, 1),
              poll_s: float = 15.) -> None:
    """Run this shard's planned runs missing from ``out_dir/results.json``;
    save after each.

    ``shard=(k, n)``: ``n`` processes share the sweep and one file. A run at
    the best lambda waits for the grid runs of the other shards. Raises
    ValueError if the file holds results of a different setup.
    """
    os.makedirs(out_dir, exist_ok=True)
    path = osp.join(osp.abspath(out_dir), 'results.json')
    done = {r['name'] for r in load_results(path, setup)['runs']}
    threads = torch.get_num_threads()
    torch.set_num_threads(setup['threads'])
    runs, sweep_start = shard_runs(setup, shard), time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as work_root:
            for i, run in enumerate(runs, 1):
                tag = f'[{shard[0]}: {i}/{len(runs)}] {run["name"]}'
                if run['name'] in done:
                    print(f'{tag}: done, skipped', flush=True)
                    continue
                run = dict(run)
                while run['clipping'] == 'best':
                    best, missing = best_clipping(
                        load_results(path, setup)['runs'], setup,
                        run['batch_size'])
                    if best is not None:
                        run['clipping'] = best
                        break
                    print(
                        f'{tag}: waiting for {missing} (other shards)',
                        flush=True)
                    time.sleep(poll_s)
                print(f'{tag}: lr {run["lr"]:g}', flush=True)
                result = train_one(run, setup, work_root)
                _add_result(path, setup, result)
                print(
                    f'{tag}: top-1 {result["top1"]:.2f}%, '
                    f'diverged {result["diverged"]}, '
                    f'{result["seconds"]:.0f} s '
                    f'(sweep {time.perf_counter() - sweep_start:.0f}'
                    ' s)',
                    flush=True)
    finally:
        torch.set_num_threads(threads)

"""Small-scale reproduction of the paper's Figure 2 (AGC and batch size).

Section 4.1: without clipping NF-ResNets degrade as the batch size and the
linearly scaled learning rate grow; AGC lets them match batch-normalised
ResNets up to batch 4096; the best clipping threshold shrinks as the batch
grows; clipping the final linear layer hurts.

Each run trains one small network with MMEngine's ``Runner`` on Fashion-MNIST
(area downsampled), Nesterov SGD, ``lr = 0.1 * B / 256 * lr_scale``, warm-up
and cosine decay, the same epochs at every batch size; it reports the test
top-1 (no EMA). The arms share :data:`ARCH`: ``nf`` (no clipping), ``nf_agc``
(AGC at lambda, the head excluded unless ``clip_head``) and ``bn``
(:func:`to_batchnorm`). A run diverged if a training loss was not finite
(training stops there) or its top-1 is below 20%.
"""
import fcntl
import json
import math
import os
import os.path as osp
import tempfile
import time
from typing import List, Tuple

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmpretrain.registry import MODELS

from nfnet_mm.models.backbones.nfnet import NFBlock
from nfnet_mm.models.layers.ws_conv import ScaledWSConv2d
from nfnet_mm.utils.checkpoint import atomic_write

__all__ = [
    'ARCH', 'FULL', 'QUICK', 'plan_runs', 'build_model', 'to_batchnorm',
    'run_sweep', 'plot_results'
]

#: The network of every arm: 14 x 14 input, stages at 7, 4 and 4 px, 26k
#: parameters.
ARCH = dict(
    depths=[1, 1, 1],
    widths=[16, 32, 64],
    group_width=8,
    bottleneck_ratio=0.5,
    se_ratio=0.5,
    alpha=0.2,
    stem_widths=[16],
    stem_strides=[1],
    strides=[2, 2, 1],
    final_expansion=1)
#: The full sweep (docs/reproduction.md) and the CI smoke sweep.
FULL = dict(
    img_size=14,
    epochs=2,
    warmup_epochs=0.5,
    train_size=None,
    test_size=None,
    batch_sizes=[256, 1024, 4096],
    clippings=[0.01, 0.04, 0.16],
    lr_scales=[4])
QUICK = dict(
    img_size=14,
    epochs=1,
    warmup_epochs=0.5,
    train_size=512,
    test_size=256,
    batch_sizes=[32, 128],
    clippings=[0.01, 0.16],
    lr_scales=[4])
DIVERGED_TOP1 = 20.


def plan_runs(setup: dict) -> List[dict]:
    """The runs of a sweep, most telling first (a stopped sweep keeps those).

    The arms at the largest and middle batches; the lambda sweep and the
    final-layer ablation at the largest; the arms at the smallest batch (the
    slowest on a CPU); last, the arms at the largest batch with the lr times
    each ``lr_scales`` entry.
    """
    sizes, lam = setup['batch_sizes'], setup['clippings'][0]
    big = sizes[-1]

    def arms(batch_size, **kwargs):
        return [
            dict(
                arm=arm,
                batch_size=batch_size,
                **kwargs,
                clipping=lam if arm == 'nf_agc' else None)
            for arm in ('nf', 'nf_agc', 'bn')
        ]

    runs = arms(big) + [run for b in sizes[-2:0:-1] for run in arms(b)]
    runs += [
        dict(arm='nf_agc', batch_size=big, clipping=c)
        for c in setup['clippings'][1:]
    ]
    runs.append(
        dict(arm='nf_agc', batch_size=big, clipping=lam, clip_head=True))
    runs += arms(sizes[0]) + [
        run for s in setup['lr_scales'] for run in arms(big, lr_scale=s)
    ]
    for run in runs:
        run.setdefault('clip_head', False)
        run.setdefault('lr_scale', 1)
        run['lr'] = 0.1 * run['batch_size'] / 256 * run['lr_scale']
        run['name'] = (
            f"{run['arm']}_b{run['batch_size']}" +
            (f"_lam{run['clipping']:g}" if run['clipping'] else '') +
            ('_cliphead' if run['clip_head'] else '') +
            (f"_lrx{run['lr_scale']:g}" if run['lr_scale'] != 1 else ''))
    return runs


def to_batchnorm(model: nn.Module) -> nn.Module:
    """Turn an NFNet-based classifier into its batch-normalised twin, in place.

    Every ``ScaledWSConv2d`` (whose ``input_scale`` holds the gains gamma and
    beta) becomes ``Conv2d(bias=False) + BatchNorm2d``; alpha and the final
    gamma become 1.
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ScaledWSConv2d):
                conv = nn.Conv2d(
                    child.in_channels,
                    child.out_channels,
                    child.kernel_size,
                    stride=child.stride,
                    padding=child.padding,
                    dilation=child.dilation,
                    groups=child.groups,
                    bias=False)
                setattr(
                    parent, name,
                    nn.Sequential(conv, nn.BatchNorm2d(child.out_channels)))
            elif isinstance(child, NFBlock):
                child.alpha = 1.
    model.backbone.gamma = 1.
    return model


def build_model(arm: str) -> nn.Module:
    """The classifier of one arm (``bn``, ``nf`` or ``nf_agc``)."""
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            data_preprocessor=dict(
                num_classes=10, mean=[72.94], std=[90.02], to_rgb=False),
            backbone=dict(
                type='NFNet',
                arch=ARCH,
                in_channels=1,
                out_indices=(-1, ),
                padding='symmetric'),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='NFNetClsHead',
                num_classes=10,
                in_channels=ARCH['widths'][-1],
                loss=dict(type='CrossEntropyLoss'),
                topk=(1, ))))
    return to_batchnorm(model) if arm == 'bn' else model


class _Diverged(Exception):
    pass


class _LossRecorder(Hook):
    """Keep every training loss; stop training at the first non-finite one."""

    def __init__(self, name: str):
        self.name, self.losses = name, []

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        loss = float(outputs['loss'].detach())
        self.losses.append(loss if math.isfinite(loss) else None)
        if not math.isfinite(loss):
            raise _Diverged

    def after_train_epoch(self, runner):
        print(
            f'  {self.name}: epoch {runner.epoch + 1}, '
            f'last loss {self.losses[-1]:.4f}',
            flush=True)


def _dataloader(setup: dict, split: str, batch_size: int) -> dict:
    size = setup[f'{split}_size']
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
            indices=size,
            serialize_data=False))


def train_one(run: dict, setup: dict, work_root: str) -> dict:
    """Train and test one run with MMEngine's Runner; return its result
    entry."""
    epochs, warmup = setup['epochs'], setup['warmup_epochs']
    agc = (
        dict(
            clipping=run['clipping'],
            eps=1e-3,
            exclude=[] if run['clip_head'] else ['head.fc.weight'])
        if run['arm'] == 'nf_agc' else None)
    recorder = _LossRecorder(run['name'])
    runner = Runner(
        model=build_model(run['arm']),
        work_dir=osp.join(work_root, run['name']),
        experiment_name=f"{run['name']}_{time.time_ns()}",
        train_dataloader=_dataloader(setup, 'train', run['batch_size']),
        val_dataloader=_dataloader(setup, 'test', 500),
        val_evaluator=dict(type='Accuracy', topk=(1, )),
        train_cfg=dict(by_epoch=True, max_epochs=epochs, val_begin=epochs + 1),
        val_cfg=dict(),
        optim_wrapper=dict(
            type='AGCOptimWrapper',
            agc=agc,
            optimizer=dict(
                type='SGD',
                lr=run['lr'],
                momentum=0.9,
                nesterov=True,
                weight_decay=5e-5),
            paramwise_cfg=dict(
                bias_decay_mult=0.,
                norm_decay_mult=0.,
                custom_keys={
                    '.gain': dict(decay_mult=0.),
                    'skip_gain': dict(decay_mult=0.)
                })),
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
        randomness=dict(seed=0),
        default_scope='mmpretrain',
        log_level='WARNING')
    start, stopped = time.perf_counter(), False
    try:
        runner.train()
    except _Diverged:
        stopped = True
    top1 = float(runner.val()['accuracy/top1'])
    keys = ('name', 'arm', 'batch_size', 'lr', 'lr_scale', 'clipping',
            'clip_head')
    return dict({k: run[k]
                 for k in keys},
                epochs=epochs,
                top1=round(top1, 2),
                diverged=stopped or top1 < DIVERGED_TOP1,
                seconds=round(time.perf_counter() - start, 1),
                train_loss=[
                    None if v is None else round(v, 5) for v in recorder.losses
                ])


def _load(path: str, setup: dict) -> dict:
    if not osp.isfile(path):
        return dict(setup=setup, arch=ARCH, runs=[])
    with open(path) as f:
        data = json.load(f)

    def same(other
             ):  # where the data is and how many threads train it may differ
        return {
            k: v
            for k, v in other.items() if k not in ('data_root', 'threads')
        }

    if same(data.get('setup')
            or {}) != same(setup) or data.get('arch') != ARCH:
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
        data = _load(path, setup)
        data['runs'] = sorted(
            [r
             for r in data['runs'] if r['name'] != result['name']] + [result],
            key=lambda r: order.index(r['name']))
        with atomic_write(path, 'w') as f:
            json.dump(data, f, indent=1)
    finally:
        os.close(lock)


def run_sweep(setup: dict, out_dir: str, shard: Tuple[int,
                                                      int] = (0, 1)) -> None:
    """Run the planned runs missing from ``out_dir/results.json``; save after
    each.

    ``shard=(k, n)`` takes every ``n``-th run from the ``k``-th, so that ``n``
    processes share a sweep and one file. Raises ValueError if the file holds
    results of a different setup.
    """
    os.makedirs(out_dir, exist_ok=True)
    path = osp.join(osp.abspath(out_dir), 'results.json')
    done = {r['name'] for r in _load(path, setup)['runs']}
    threads = torch.get_num_threads()
    torch.set_num_threads(setup['threads'])
    runs, sweep_start = plan_runs(setup), time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as work_root:
            for i, run in enumerate(runs, 1):
                tag = f'[{i}/{len(runs)}] {run["name"]}'
                if run['name'] in done:
                    print(f'{tag}: done, skipped', flush=True)
                    continue
                if (i - 1) % shard[1] != shard[0]:
                    continue
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


_LOSS_CAP = 30.
_STYLE = {
    'bn': ('tab:blue', 'BN-ResNet (batch norm, no clipping)'),
    'nf': ('tab:red', 'NF (scaled WS, no clipping)'),
    'nf_agc': ('tab:green', 'NF + AGC')
}


def _figure(caption: str):
    import matplotlib
    matplotlib.use('Agg')
    import textwrap

    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    fig.subplots_adjust(bottom=0.3)
    fig.text(
        0.02, 0.02, textwrap.fill(caption, 100), fontsize=7.5, va='bottom')
    return fig, ax


def _mark(ax, xs, runs, color):
    """Line through the runs' top-1, with diverged runs drawn as crosses."""
    ax.plot(xs, [r['top1'] for r in runs], '-', color=color, alpha=0.6)
    for x, r in zip(xs, runs):
        ax.plot(x, r['top1'], 'x' if r['diverged'] else 'o', color=color, ms=8)


def plot_results(out_dir: str) -> List[str]:
    """Draw Fig. 2 left/right analogues and the large-batch loss curves as
    PNGs."""
    with open(osp.join(out_dir, 'results.json')) as f:
        data = json.load(f)
    setup, runs = data['setup'], data['runs']
    lam, big = setup['clippings'][0], setup['batch_sizes'][-1]
    base = [r for r in runs if r['lr_scale'] == 1 and not r['clip_head']]
    main = {
        arm:
        sorted((r for r in base
                if r['arm'] == arm and r['clipping'] in (None, lam)),
               key=lambda r: r['batch_size'])
        for arm in _STYLE
    }
    sched = (
        f"{setup['epochs']} epoch(s) at every batch size, "
        f"{setup['img_size']} px, "
        'lr = 0.1 B/256, Nesterov SGD, warm-up + cosine; one seed; '
        'x = diverged. '
    )
    paths = []

    fig, ax = _figure(
        'Paper (Fig. 2 left): without clipping NF-ResNets degrade as the '
        'batch '
        'size (and the linearly scaled lr) grows; with AGC they keep up with '
        'batch-normalised ResNets up to batch 4096. '
        f'NF + AGC at lambda={lam:g}. '
        + sched)
    for arm, (color, label) in _STYLE.items():
        if main[arm]:
            _mark(ax, [r['batch_size'] for r in main[arm]], main[arm], color)
            ax.plot([], [], 'o-', color=color, label=label)
    ax.set(
        xscale='log',
        xlabel='batch size',
        ylabel='test top-1 (%)',
        title='Fashion-MNIST: top-1 against batch size')
    ax.set_xticks(setup['batch_sizes'], [str(b) for b in setup['batch_sizes']])
    ax.xaxis.set_minor_formatter('')
    ax.legend()
    paths.append(osp.join(out_dir, 'top1_vs_batch_size.png'))

    fig2, ax2 = _figure(
        'Paper (Fig. 2 right): at large batch the best clipping threshold '
        'lambda is small (0.01-0.02 at batch 4096) and large lambdas fail; '
        'clipping the final linear layer hurts. Horizontal lines: the '
        f'unclipped arms at the same batch. Batch {big}. ' + sched)
    agc = sorted(
        (r for r in base if r['arm'] == 'nf_agc' and r['batch_size'] == big),
        key=lambda r: r['clipping'])
    if agc:
        _mark(ax2, [r['clipping'] for r in agc], agc, _STYLE['nf_agc'][0])
        ax2.plot([], [],
                 'o-',
                 color=_STYLE['nf_agc'][0],
                 label='NF + AGC (final layer '
                 'not clipped)')
    for r in runs:
        if r['clip_head'] and r['batch_size'] == big:
            ax2.plot(
                r['clipping'],
                r['top1'],
                'x' if r['diverged'] else '*',
                ms=12,
                color='black',
                label='NF + AGC, final layer clipped too')
    for arm in ('bn', 'nf'):
        for r in main[arm]:
            if r['batch_size'] == big:
                ax2.axhline(
                    r['top1'],
                    ls='--',
                    color=_STYLE[arm][0],
                    label=_STYLE[arm][1])
    ax2.set(
        xscale='log',
        xlabel='clipping threshold lambda',
        ylabel='test top-1 (%)',
        title=f'Fashion-MNIST, batch {big}: top-1 against lambda')
    ax2.set_xticks(setup['clippings'], [f'{c:g}' for c in setup['clippings']])
    ax2.xaxis.set_minor_formatter('')
    ax2.legend(fontsize=8)
    paths.append(osp.join(out_dir, 'top1_vs_clipping.png'))

    fig3, ax3 = _figure(
        'Paper: at large batch and learning rate, unclipped NF networks '
        'become unstable (loss spikes or divergence) while AGC and batch '
        'norm train smoothly. Solid: lr = 0.1 B/256; dashed: lr x '
        f'{", ".join(map(str, setup["lr_scales"]))}. Losses above '
        f'{_LOSS_CAP:g} are drawn at {_LOSS_CAP:g}; a cross marks a '
        f'non-finite loss (training stopped). Batch {big}. ' + sched)
    for r in runs:
        if r['batch_size'] != big or r['clip_head'] or r['clipping'] not in (
                None, lam):
            continue
        color, label = _STYLE[r['arm']]
        losses = [
            _LOSS_CAP if v is None else min(v, _LOSS_CAP)
            for v in r['train_loss']
        ]
        ax3.plot(
            range(1,
                  len(losses) + 1),
            losses,
            '-' if r['lr_scale'] == 1 else '--',
            color=color,
            label=f"{label}, lr {r['lr']:g}")
        if r['train_loss'] and r['train_loss'][-1] is None:
            ax3.plot(len(losses), _LOSS_CAP, 'x', color=color, ms=12)
    ax3.set(
        yscale='log',
        xlabel='iteration',
        ylabel='training loss (cross-entropy)',
        title=f'Fashion-MNIST, batch {big}: training loss')
    ax3.set_yticks([0.2, 0.5, 1, 2, 5, 10, _LOSS_CAP],
                   ['0.2', '0.5', '1', '2', '5', '10', f'{_LOSS_CAP:g}+'])
    ax3.yaxis.set_minor_formatter('')
    ax3.legend(fontsize=8)
    paths.append(osp.join(out_dir, 'train_loss_batch_{}.png'.format(big)))
    for figure, path in zip((fig, fig2, fig3), paths):
        figure.savefig(path, dpi=110)
    return paths

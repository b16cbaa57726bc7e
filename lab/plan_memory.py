"""Plan the GPU memory of training configs: per-GPU need and largest batch.

For each config: activations saved for backward per image (measured at the
config's train resolution under bf16 autocast, on the CPU, with and without
``with_cp``), the state the config implies (weights, gradients, DDP buckets,
momentum, EMA, SAM's copy), the need at the config's per-GPU batch and the
largest batch that fits ``--gpu-gib``; see :mod:`lab.benchmarks.memory`.

Examples::

    python -m lab.plan_memory --gpu-gib 80 --out memory.json  # F0-F6
    python -m lab.plan_memory configs/nfnet/nfnet-f6_8xb128-sam_in1k.py
    python -m lab.plan_memory --quick  # CI: a tiny arch at 32 px
    # GPU: the measured peak of one step next to the estimate
    python -m lab.plan_memory configs/nfnet/nfnet-f0_8xb128_in1k.py \
        --device cuda --peak-batch 32
"""
import argparse
import copy
import glob
import multiprocessing
import os.path as osp
import sys
from concurrent.futures import ProcessPoolExecutor

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import DefaultScope

from lab.benchmarks.harness import TINY_ARCH, markdown_table, write_json
from lab.benchmarks.memory import (GIB, activation_bytes, estimate,
                                   largest_batch, measured_peak, state_bytes)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIGS = sorted(
    glob.glob(osp.join(REPO, 'configs', 'nfnet', 'nfnet-f?_*_in1k.py')))


class _Logits(nn.Module):
    """An ImageClassifier called on a tensor: its logits."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x):
        return self.classifier(x, mode='tensor')


def _build(model_cfg, with_cp: bool, device: str):
    from mmpretrain.registry import MODELS

    import nfnet_mm  # noqa: F401  (registers the modules)
    cfg = copy.deepcopy(model_cfg)
    cfg.backbone.with_cp = with_cp
    cfg.backbone.pop('init_cfg', None)
    cfg.pop('data_preprocessor', None)
    if cfg.get('type') == 'SAMImageClassifier':
        cfg.type = 'ImageClassifier'
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg)
    return _Logits(model).to(device)


def _train_px(cfg: Config) -> int:
    if 'train_px' in cfg:
        return cfg.train_px
    dataset = cfg.train_dataloader.dataset
    while 'pipeline' not in dataset:
        dataset = dataset.dataset
    crop = [t for t in dataset.pipeline if t['type'] == 'RandomResizedCrop']
    return crop[0]['scale']


def _activations(model_cfg, px: int, with_cp: bool, device: str) -> dict:
    model = _build(model_cfg, with_cp, device)
    blocks = [b for stage in model.classifier.backbone.stages for b in stage]
    act = activation_bytes(model, px, blocks=blocks)
    if not with_cp:
        act['largest_block'] = 0  # nothing is recomputed
    act['params'] = sum(p.numel() for p in model.parameters())
    return act


def plan(path: str,
         gpu_gib: float,
         cache: dict,
         device: str = 'cpu',
         model_cfg=None,
         px=None) -> dict:
    """One config's row (``cache`` keeps measurements across configs)."""
    cfg = Config.fromfile(path)
    model_cfg = model_cfg or cfg.model
    px = px or _train_px(cfg)
    batch = cfg.train_dataloader.batch_size
    sam = 'SAM' in cfg.optim_wrapper.type
    ddp = cfg.get('model_wrapper_cfg') or {}
    with_cp = bool(model_cfg.backbone.get('with_cp', False))
    acts = {}
    for cp in (False, True):
        key = (repr(model_cfg.backbone), px, cp)
        if key not in cache:  # a fresh process each: nothing accumulates
            with ProcessPoolExecutor(
                    1, multiprocessing.get_context('spawn')) as pool:
                cache[key] = pool.submit(_activations, model_cfg, px, cp,
                                         device).result()
        acts[cp] = cache[key]
    act = acts[with_cp]
    state = state_bytes(
        act['params'],
        sam=sam,
        ema=any(h['type'] == 'EMAHook' for h in cfg.get('custom_hooks', [])),
        ddp_buckets=not ddp.get('gradient_as_bucket_view', False))
    state_total = sum(state.values())
    gpu_bytes = int(gpu_gib * GIB)
    per_image = {
        cp: a['per_image'] + a['largest_block']
        for cp, a in acts.items()
    }
    est = estimate(gpu_bytes, batch, state_total, act['fixed'],
                   per_image[with_cp])
    return dict(
        config=osp.relpath(path, REPO),
        train_px=px,
        batch_per_gpu=batch,
        accumulative_counts=cfg.optim_wrapper.get('accumulative_counts', 1),
        with_cp=with_cp,
        params=act['params'],
        act_per_image_gib=per_image[False] / GIB,
        act_per_image_cp_gib=per_image[True] / GIB,
        fixed_gib=act['fixed'] / GIB,
        state_gib={
            k: v / GIB
            for k, v in state.items()
        },
        need_gib=est['need_bytes'] / GIB,
        gpu_gib=gpu_gib,
        fits=est['fits'],
        largest_batch={
            'without_cp':
            largest_batch(gpu_bytes, state_total, acts[False]['fixed'],
                          per_image[False]),
            'with_cp':
            largest_batch(gpu_bytes, state_total, acts[True]['fixed'],
                          per_image[True]),
        })


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('configs', nargs='*', help='defaults to F0-F6 ImageNet')
    p.add_argument('--gpu-gib', type=float, default=80.)
    p.add_argument('--device', default='cpu', help='where to measure')
    p.add_argument(
        '--peak-batch',
        type=int,
        help='CUDA: also measure the peak of one step at this batch')
    p.add_argument(
        '--quick', action='store_true', help='the demo config, tiny, 32 px')
    p.add_argument('--out', help='JSON output')
    return p.parse_args(argv)


def main(argv=None) -> list:
    args = parse_args(argv)
    if args.peak_batch and not torch.cuda.is_available():
        sys.exit(
            'plan_memory: --peak-batch measures a CUDA peak; this machine '
            'has no CUDA device (drop --peak-batch).')
    cache, rows, todo = {}, [], []
    if args.quick:
        path = osp.join(REPO, 'configs', 'nfnet', 'nfnet-f0_8xb128_in1k.py')
        model_cfg = Config.fromfile(path).model
        model_cfg.backbone.arch = dict(TINY_ARCH)
        model_cfg.head.in_channels = TINY_ARCH['widths'][-1] * 2
        todo.append((path, model_cfg, 32))
    todo += [
        (path, None, None)
        for path in args.configs or ([] if args.quick else DEFAULT_CONFIGS)
    ]
    for path, model_cfg, px in todo:
        row = plan(path, args.gpu_gib, cache, args.device, model_cfg, px)
        rows.append(row)
        if args.peak_batch:
            model = _build(
                model_cfg or Config.fromfile(path).model, row['with_cp'],
                'cuda')
            row['measured_peak_gib'] = measured_peak(model, args.peak_batch,
                                                     row['train_px']) / GIB
            row['peak_batch'] = args.peak_batch
            # the same step estimated: one process, SGD with momentum
            one = state_bytes(row['params'], ema=False, ddp_buckets=False)
            row['estimated_peak_gib'] = (
                sum(one.values()) / GIB + row['fixed_gib'] +
                args.peak_batch * row['act_per_image_cp_gib' if row['with_cp']
                                      else 'act_per_image_gib'])
    print(
        markdown_table(
            ('config', 'px', 'batch/GPU', 'with_cp', 'act GiB/img',
             'act GiB/img (cp)', 'state GiB', 'need GiB', 'fits',
             f'max batch {args.gpu_gib:g} GiB (cp)'),
            [(r['config'].split('/')[-1], r['train_px'], r['batch_per_gpu'],
              r['with_cp'], f"{r['act_per_image_gib']:.3f}",
              f"{r['act_per_image_cp_gib']:.3f}",
              f"{sum(r['state_gib'].values()):.1f}", f"{r['need_gib']:.1f}",
              r['fits'], f"{r['largest_batch']['without_cp']} "
              f"({r['largest_batch']['with_cp']})") for r in rows]))
    write_json(args.out, dict(rows=rows, argv=sys.argv[1:]))
    return rows


if __name__ == '__main__':
    torch.set_grad_enabled(True)
    main()

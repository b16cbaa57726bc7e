"""CPU inference benchmark of WS folding (``NFNet.switch_to_deploy()``).

Times the forward pass of an NFNet classifier (backbone + global pooling +
``NFNetClsHead``) in eval mode under ``torch.inference_mode()``, as trained
(the weight standardisation is recomputed every call) and after
``switch_to_deploy()`` (plain conv weights; the activation gains are folded
into the following convs). The two models are timed alternately, each
reported time is the median over ``--iters`` calls after ``--warmup`` calls.
It also counts the ATen operators one forward pass dispatches and checks
that the outputs agree.

Example (the numbers in docs/benchmarks.md)::

    OMP_NUM_THREADS=1 python tools/analysis_tools/benchmark_deploy.py \
        --arch f0 --img-size 256 --batch 2 --iters 5 --warmup 1 \
        --out work_dirs/benchmark_deploy_f0.json
"""
import argparse
import copy
import json
import os
import platform
import statistics
import time
from collections import Counter
from typing import Dict, List

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import nfnet_mm  # noqa: F401
from mmpretrain.registry import MODELS

__all__ = ['build_classifier', 'count_aten_ops', 'run', 'parse_args', 'main']


class _OpCounter(TorchDispatchMode):

    def __init__(self):
        super().__init__()
        self.counts = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def count_aten_ops(model: torch.nn.Module, x: torch.Tensor) -> Dict[str, int]:
    """Count the ATen operators dispatched by one forward pass."""
    counter = _OpCounter()
    with torch.inference_mode(), counter:
        model(x)
    return dict(counter.counts)


def build_classifier(arch, num_classes: int = 1000) -> torch.nn.Module:
    """NFNet + GlobalAveragePooling + NFNetClsHead, in eval mode."""
    backbone = MODELS.build(dict(type='NFNet', arch=arch))
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=backbone,
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='NFNetClsHead',
                num_classes=num_classes,
                in_channels=backbone.num_features)))
    # non-trivial skip gains (they init to 0, which would skip the blocks'
    # residual branches' contribution but not their cost)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('skip_gain'):
                p.fill_(0.2)
    return model.eval()


def run(arch='f0',
        img_size: int = 256,
        batch: int = 2,
        iters: int = 5,
        warmup: int = 1,
        seed: int = 0) -> dict:
    """Time unfolded vs folded inference; return a result dict."""
    torch.manual_seed(seed)
    unfolded = build_classifier(arch)
    folded = copy.deepcopy(unfolded)
    folded.backbone.switch_to_deploy()
    models = {'unfolded': unfolded, 'folded': folded}
    x = torch.randn(batch, 3, img_size, img_size)

    with torch.inference_mode():
        outs = {k: m(x, mode='tensor') for k, m in models.items()}
        for _ in range(warmup):
            for m in models.values():
                m(x, mode='tensor')
        times: Dict[str, List[float]] = {k: [] for k in models}
        for i in range(iters):
            order = list(models) if i % 2 == 0 else list(models)[::-1]
            for k in order:
                t0 = time.perf_counter()
                models[k](x, mode='tensor')
                times[k].append(time.perf_counter() - t0)
    small = torch.randn(1, 3, 64, 64)
    ops = {k: count_aten_ops(m.backbone, small) for k, m in models.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    return dict(
        arch=arch,
        img_size=img_size,
        batch=batch,
        iters=iters,
        warmup=warmup,
        median_s=med,
        times_s=times,
        ratio_unfolded_over_folded=med['unfolded'] / med['folded'],
        max_abs_logit_diff=(outs['unfolded'] -
                            outs['folded']).abs().max().item(),
        max_abs_logit=outs['unfolded'].abs().max().item(),
        aten_ops_per_forward={k: sum(v.values())
                              for k, v in ops.items()},
        env=dict(
            torch=torch.__version__,
            threads=torch.get_num_threads(),
            omp_num_threads=os.environ.get('OMP_NUM_THREADS'),
            python=platform.python_version(),
            machine=platform.machine(),
            processor=platform.processor() or platform.machine(),
            cpu_count=os.cpu_count(),
        ))


def parse_args():
    parser = argparse.ArgumentParser(
        description='CPU inference time of NFNet with and without WS '
        'folding (switch_to_deploy).')
    parser.add_argument('--arch', default='f0', help='NFNet arch name')
    parser.add_argument('--img-size', type=int, default=256)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads (default: unchanged)')
    parser.add_argument('--out', default=None, help='write results as JSON')
    return parser.parse_args()


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run(args.arch, args.img_size, args.batch, args.iters, args.warmup)
    print(f"NFNet-{res['arch']} {res['img_size']}px batch {res['batch']}, "
          f"median of {res['iters']} ({res['env']['threads']} threads, "
          f"torch {res['env']['torch']})")
    print(f"{'model':<10} {'median ms':>10} {'aten ops':>9}")
    for k in ('unfolded', 'folded'):
        print(f"{k:<10} {res['median_s'][k] * 1e3:>10.1f} "
              f"{res['aten_ops_per_forward'][k]:>9d}")
    print(f"speed-up (unfolded / folded): "
          f"{res['ratio_unfolded_over_folded']:.3f}x; max |logit diff| "
          f"{res['max_abs_logit_diff']:.2e} (max |logit| "
          f"{res['max_abs_logit']:.2e})")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(res, f, indent=2)
        print(f'wrote {args.out}')


if __name__ == '__main__':
    main()

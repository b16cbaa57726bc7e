"""Step-time cost of SAM (NFNet paper appendix A.4) over a plain training step.

One run times, side by side, a full MMEngine training step
(``model.train_step(data, optim_wrapper)``: data pre-processing, forward, backward,
optimizer step) of the same small NFNet classifier with:

- ``plain``: ``SAMOptimWrapper``'s base, ``AGCOptimWrapper`` (one pass);
- ``sam 0.2``: ``SAMOptimWrapper(ascent_fraction=0.2)``, the paper's cheap ascent;
- ``sam 1.0``: ``SAMOptimWrapper(ascent_fraction=1.0)``, the original SAM.

Each runner has its own copy of the model and of the optimizer; the repetitions are
interleaved (the order rotates every repetition) so that all runners see the same
machine state, and each reported time is the median over ``--steps`` timed steps after
``--warmup`` warm-up steps. Both the wall-clock time and the process CPU time
(``time.process_time``) of each step are reported: on a shared machine the CPU time of
a single-threaded run (``--threads 1``) measures the work done, unaffected by waiting
for a core. The paper reports +20-40% for the 20% ascent (accelerators,
large batches) and about +100% for full SAM.

Examples::

    # as in docs/benchmarks.md (CPU)
    python tools/analysis_tools/benchmark_sam.py --batch 32 --img-size 64 \
        --steps 15 --warmup 3 --out sam_cpu.json
    # CI smoke run: tiny batch and images, 1 warm-up + 2 steps
    python tools/analysis_tools/benchmark_sam.py --ci --out sam_ci.json

Prints a table and writes a JSON file (``--out``) with the settings, the machine and
the versions.
"""
import argparse
import copy
import json
import logging
import platform
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.logging import MMLogger

__all__ = ['TINY_ARCH', 'parse_args', 'build_model', 'build_runners',
           'run_benchmark', 'main']

# The small arch of docs/design.md (tests and demos).
TINY_ARCH = dict(depths=[1, 1, 1, 1], widths=[32, 64, 96, 128], group_width=16,
                 bottleneck_ratio=0.5, se_ratio=0.5, alpha=0.2,
                 stem_widths=[8, 16, 16, 32], stem_strides=[2, 1, 1, 2],
                 strides=[1, 2, 2, 2], final_expansion=2)
NUM_CLASSES = 10


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Step time of SAM (20%% and 100%% ascent) over a plain step')
    parser.add_argument('--arch', default='tiny',
                        help="NFNet arch: 'tiny' (docs/design.md) or f0..f7. "
                        'Defaults to tiny.')
    parser.add_argument('--batch', type=int, default=32, help='Defaults to 32.')
    parser.add_argument('--img-size', type=int, default=64, help='Defaults to 64.')
    parser.add_argument('--steps', type=int, default=15,
                        help='Timed steps per runner. Defaults to 15.')
    parser.add_argument('--warmup', type=int, default=3,
                        help='Warm-up steps per runner. Defaults to 3.')
    parser.add_argument('--fractions', type=float, nargs='+', default=[0.2, 1.0],
                        help='SAM ascent fractions to time. Defaults to 0.2 1.0.')
    parser.add_argument('--rho', type=float, default=0.05, help='Defaults to 0.05.')
    parser.add_argument('--agc', type=float, default=None,
                        help='AGC clipping (lambda) for every runner; '
                        'defaults to None (no AGC).')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads; defaults to torch default.')
    parser.add_argument('--seed', type=int, default=0, help='Defaults to 0.')
    parser.add_argument('--out', default=None, help='Write the results as JSON.')
    parser.add_argument('--ci', action='store_true',
                        help='Smoke run: batch 5, 32 px, 1 warm-up + 2 steps.')
    args = parser.parse_args(argv)
    if args.ci:
        args.batch, args.img_size, args.steps, args.warmup = 5, 32, 2, 1
    for name in ('batch', 'img_size', 'steps'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got '
                         f'{getattr(args, name)}')
    if args.warmup < 0:
        parser.error(f'--warmup must be >= 0, got {args.warmup}')
    for fraction in args.fractions:
        if not 0 < fraction <= 1:
            parser.error(f'--fractions must be in (0, 1], got {fraction}')
    return args


def build_model(arch: str = 'tiny'):
    """A ``SAMImageClassifier`` with an NFNet backbone (train mode)."""
    import nfnet_mm  # noqa: F401
    from mmpretrain.registry import MODELS
    arch_cfg = TINY_ARCH if arch == 'tiny' else arch  # NFNet names bad archs
    backbone = MODELS.build(dict(type='NFNet', arch=arch_cfg))
    in_channels = backbone.arch['final_expansion'] * backbone.arch['widths'][-1]
    model = MODELS.build(dict(
        type='SAMImageClassifier',
        backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='NFNetClsHead', num_classes=NUM_CLASSES,
                  in_channels=in_channels,
                  loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                            mode='original')),
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=NUM_CLASSES,
                               mean=[127.5] * 3, std=[127.5] * 3)))
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights() logs every parameter
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model.train()


def build_runners(model, fractions: Sequence[float], rho: float,
                  agc: Optional[float]) -> Dict[str, tuple]:
    """``name -> (model copy, optimizer wrapper)`` for the plain and SAM steps."""
    from mmpretrain.registry import OPTIM_WRAPPERS
    agc_cfg = None if agc is None else dict(clipping=agc)
    runners = {}

    def wrapper(model_copy, **kwargs):
        optimizer = torch.optim.SGD(model_copy.parameters(), lr=0.01,
                                    momentum=0.9, nesterov=True)
        return OPTIM_WRAPPERS.build(dict(optimizer=optimizer, agc=agc_cfg, **kwargs))

    plain = copy.deepcopy(model)
    runners['plain'] = (plain, wrapper(plain, type='AGCOptimWrapper'))
    for fraction in fractions:
        sam = copy.deepcopy(model)
        runners[f'sam {fraction:g}'] = (sam, wrapper(
            sam, type='SAMOptimWrapper', rho=rho, ascent_fraction=fraction))
    return runners


def _batch(batch: int, img_size: int, seed: int) -> dict:
    from mmpretrain.structures import DataSample
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, 256, (batch, 3, img_size, img_size), generator=gen,
                           dtype=torch.uint8)
    labels = torch.randint(0, NUM_CLASSES, (batch, ), generator=gen)
    return dict(inputs=inputs,
                data_samples=[DataSample().set_gt_label(int(i)) for i in labels])


def _cpu_model() -> str:
    """The CPU's model name (Linux), else ``platform.processor()``."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def run_benchmark(args: argparse.Namespace) -> dict:
    """Time the runners (interleaved) and return the results as a dict."""
    import mmengine
    import mmpretrain
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build_model(args.arch)
    runners = build_runners(model, args.fractions, args.rho, args.agc)
    data = _batch(args.batch, args.img_size, args.seed)
    names = list(runners)
    times: Dict[str, List[float]] = {name: [] for name in names}
    cpu_times: Dict[str, List[float]] = {name: [] for name in names}
    last_logs: Dict[str, dict] = {}
    for rep in range(args.warmup + args.steps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            runner_model, optim_wrapper = runners[name]
            start, cpu_start = time.perf_counter(), time.process_time()
            log_vars = runner_model.train_step(data, optim_wrapper)
            elapsed = time.perf_counter() - start
            cpu_elapsed = time.process_time() - cpu_start
            if rep >= args.warmup:
                times[name].append(elapsed * 1e3)
                cpu_times[name].append(cpu_elapsed * 1e3)
            last_logs[name] = {k: float(v.detach()) if torch.is_tensor(v) else float(v)
                               for k, v in log_vars.items()}
    results = {}
    plain_ms = statistics.median(times['plain'])
    plain_cpu_ms = statistics.median(cpu_times['plain'])
    for name in names:
        ms = statistics.median(times[name])
        cpu_ms = statistics.median(cpu_times[name])
        optim_wrapper = runners[name][1]
        entry = dict(ms_per_step=ms, ms_all=times[name], ratio_to_plain=ms / plain_ms,
                     cpu_ms_per_step=cpu_ms, cpu_ms_all=cpu_times[name],
                     cpu_ratio_to_plain=cpu_ms / plain_cpu_ms,
                     last_log_vars=last_logs[name])
        if hasattr(optim_wrapper, 'ascent_size'):
            entry['ascent_fraction'] = optim_wrapper.ascent_fraction
            entry['ascent_samples'] = optim_wrapper.ascent_size(args.batch)
        results[name] = entry
    settings = {k: v for k, v in vars(args).items() if k != 'out'}
    return dict(
        settings=settings,
        params=sum(p.numel() for p in model.parameters()),
        env=dict(
            machine=platform.machine(), cpu=_cpu_model(),
            platform=platform.platform(), python=platform.python_version(),
            torch_threads=torch.get_num_threads(),
            versions=dict(torch=torch.__version__, mmengine=mmengine.__version__,
                          mmpretrain=mmpretrain.__version__)),
        results=results)


def format_table(res: dict) -> str:
    lines = [
        f"NFNet arch {res['settings']['arch']}, {res['params']:,} params, batch "
        f"{res['settings']['batch']}, {res['settings']['img_size']} px, "
        f"{res['env']['cpu']}, {res['env']['torch_threads']} threads, median of "
        f"{res['settings']['steps']} steps",
        '| runner | ascent samples | wall ms/step | x plain (wall) | '
        'CPU ms/step | x plain (CPU) |',
        '|---|---|---|---|---|---|',
    ]
    for name, r in res['results'].items():
        lines.append(f"| {name} | {r.get('ascent_samples', '-')} | "
                     f"{r['ms_per_step']:.1f} | {r['ratio_to_plain']:.2f} | "
                     f"{r['cpu_ms_per_step']:.1f} | {r['cpu_ratio_to_plain']:.2f} |")
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    res = run_benchmark(args)
    print(format_table(res))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == '__main__':
    main(sys.argv[1:])

"""The timer, machine info, model builders and output shared by the benchmarks.

Median after warm-up (the paper's protocol); the runners of one measurement
take turns in every repetition, and a ratio is the median of per-repetition
ratios (:func:`paired_ratio`), which cancels a shared machine's load drifts.
"""
import importlib
import json
import platform
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn

# Variant -> (train px, test px, dropout, paper GMACs at the test px), from
# the paper's Table 2 (its "GFLOPs" are multiply-adds).
VARIANTS = {
    'f0': (192, 256, 0.2, 12.38),
    'f1': (224, 320, 0.3, 35.54),
    'f2': (256, 352, 0.4, 62.59),
    'f3': (320, 416, 0.4, 114.76),
    'f4': (384, 512, 0.5, 215.24),
    'f5': (416, 544, 0.5, 289.76),
    'f6': (448, 576, 0.5, 377.28),
}

# A small arch whose stem is timm's 'deep_quad' (widths w/8, w/4, w/2, w), so
# that timm builds the same network: the CI runs and the CPU-sized benchmarks.
TINY_ARCH = dict(
    depths=[1, 1, 1, 1],
    widths=[32, 64, 96, 128],
    group_width=16,
    bottleneck_ratio=0.5,
    se_ratio=0.5,
    alpha=0.2,
    stem_widths=[4, 8, 16, 32],
    stem_strides=[2, 1, 1, 2],
    strides=[1, 2, 2, 2],
    final_expansion=2)

# Dense bf16 peak TFLOP/s by GPU name; the first contained key wins.
BF16_PEAK_TFLOPS = [('H100 PCIe', 756.), ('H100 NVL', 835.), ('H100', 989.),
                    ('H200', 989.), ('GH200', 989.), ('B200', 2250.),
                    ('A100', 312.), ('L40S', 362.), ('A10', 125.)]


class Runner:
    """One thing to time: ``step()`` after an untimed ``setup()``.

    ``state_bytes()``: the bytes the runner keeps resident (parameters,
    buffers, optimizer state), added to its peak memory.
    """

    def __init__(self,
                 name: str,
                 step: Callable,
                 setup: Optional[Callable] = None,
                 state_bytes: Callable[[], int] = lambda: 0) -> None:
        self.name, self.step, self.setup = name, step, setup
        self.state_bytes = state_bytes
        self.times: List[float] = []
        self.cpu_times: List[float] = []
        self.peak_mb: Optional[float] = None
        self.error: Optional[str] = None


def tensor_bytes(*groups) -> int:
    """Bytes of the tensors in ``groups`` (iterables, or optimizers' state)."""
    total = 0
    for group in groups:
        if isinstance(group, torch.optim.Optimizer):
            group = [t for s in group.state.values() for t in s.values()]
        total += sum(t.numel() * t.element_size() for t in group
                     if isinstance(t, torch.Tensor))
    return total


def time_interleaved(runners: Sequence[Runner], warmup: int, steps: int,
                     device: torch.device) -> None:
    """Time every runner ``warmup + steps`` times, taking turns.

    Repetition ``i`` rotates the order by ``i``; wall and CPU ms of the last
    ``steps`` go to ``runner.times``/``cpu_times``. A runner that raises gets
    ``error`` and drops out. On CUDA, ``peak_mb`` is the step's peak above
    what was allocated before it, plus ``state_bytes()``.
    """
    cuda = device.type == 'cuda'
    for i in range(warmup + steps):
        shift = i % max(len(runners), 1)
        for r in list(runners[shift:]) + list(runners[:shift]):
            if r.error is not None:
                continue
            try:
                if r.setup is not None:
                    r.setup()
                if cuda:
                    torch.cuda.synchronize(device)
                    torch.cuda.reset_peak_memory_stats(device)
                    before = torch.cuda.memory_allocated(device)
                wall, cpu = time.perf_counter(), time.process_time()
                r.step()
                if cuda:
                    torch.cuda.synchronize(device)
            except Exception as err:  # reported, the others go on
                r.error = f'{type(err).__name__}: {err}'.splitlines()[0]
                continue
            if i >= warmup:
                r.times.append((time.perf_counter() - wall) * 1e3)
                r.cpu_times.append((time.process_time() - cpu) * 1e3)
            if cuda:
                peak = torch.cuda.max_memory_allocated(device) - before
                r.peak_mb = (peak + r.state_bytes()) / 2**20


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median of ``num[i] / den[i]`` over repetitions timed back to back."""
    if len(num) != len(den) or not num:
        raise ValueError(f'paired_ratio needs two equal, non-empty series; '
                         f'got {len(num)} and {len(den)} values')
    return statistics.median(n / d for n, d in zip(num, den))


def summary(r: Runner,
            batch: int,
            flops_per_step: Optional[float] = None,
            peak_tflops: Optional[float] = None) -> Dict:
    """A runner's medians, throughput, memory and MFU (or its error)."""
    if r.error or not r.times:
        return dict(error=r.error or 'no timed steps')
    ms = statistics.median(r.times)
    mfu = (
        flops_per_step / (ms * 1e-3) /
        (peak_tflops * 1e12) if flops_per_step and peak_tflops else None)
    return dict(
        ms_per_step=ms,
        img_per_s=batch / ms * 1e3,
        ms_all=r.times,
        cpu_ms_per_step=statistics.median(r.cpu_times),
        cpu_ms_all=r.cpu_times,
        peak_mem_mb=r.peak_mb,
        mfu=mfu)


def machine_info(device: torch.device) -> Dict:
    """Device name, CPU, GPU, threads and package versions."""
    versions = {'python': platform.python_version()}
    for mod in ('torch', 'timm', 'mmengine', 'mmpretrain', 'mmcv', 'nfnet_mm'):
        try:
            versions[mod] = importlib.import_module(mod).__version__
        except ImportError:
            versions[mod] = 'n/a'
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(
                line.split(':', 1)[1].strip() for line in f
                if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    info = dict(
        cpu=cpu,
        threads=torch.get_num_threads(),
        versions=versions,
        device_name=f'{cpu} ({torch.get_num_threads()} threads)')
    if device.type == 'cuda':
        info['device_name'] = info['gpu'] = torch.cuda.get_device_name(device)
        versions['cuda'] = torch.version.cuda
        versions['cudnn'] = str(torch.backends.cudnn.version())
    return info


def bf16_peak_tflops(device: torch.device) -> Optional[float]:
    """Dense bf16 peak of a CUDA device from :data:`BF16_PEAK_TFLOPS`."""
    if device.type != 'cuda':
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS if key in name), None)


def paper_flops(variant: Optional[str], img_size: int,
                train: bool) -> Optional[float]:
    """FLOPs per image from the paper's GMACs, scaled to ``img_size``
    (2 FLOPs per multiply-add; a training step is 3 forward passes)."""
    if variant not in VARIANTS:
        return None
    _, test_px, _, gmacs = VARIANTS[variant]
    return 2e9 * gmacs * (img_size / test_px)**2 * (3 if train else 1)


def build_ours(arch,
               num_classes: int = 1000,
               dropout: float = 0.,
               sam: bool = False,
               **backbone) -> nn.Module:
    """Our classifier: NFNet + GAP + NFNetClsHead (+ a data preprocessor).

    ``arch``: an NFNet arch name or dict, one of timm's NF names, or
    ``'tiny'`` (:data:`TINY_ARCH`);
    ``sam``: a ``SAMImageClassifier``; ``backbone``: more ``NFNet`` arguments.
    """
    from mmpretrain.registry import MODELS

    import nfnet_mm  # noqa: F401  (registers our modules)
    from nfnet_mm.converters import TIMM_MODELS
    if isinstance(arch, str) and arch in TIMM_MODELS:  # timm's name
        cfg = dict(TIMM_MODELS[arch], **backbone)
    else:
        cfg = dict(
            type='NFNet',
            **backbone,
            arch=TINY_ARCH if arch == 'tiny' else arch)
    net = MODELS.build(cfg)
    return MODELS.build(
        dict(
            type='SAMImageClassifier' if sam else 'ImageClassifier',
            backbone=net,
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='NFNetClsHead',
                num_classes=num_classes,
                in_channels=net.num_features,
                dropout_rate=dropout),
            data_preprocessor=dict(
                type='ClsDataPreprocessor', num_classes=num_classes)))


def timm_cfg_from_arch(arch: Dict):
    """timm ``NfCfg`` of the same network as our arch dict.

    Raises:
        ValueError: If timm cannot express the arch (its 'deep_quad' stem and
            stage strides are fixed).
    """
    from timm.models.nfnet import NfCfg
    w = arch['stem_widths'][-1]
    wanted = dict(
        stem_widths=[w // 8, w // 4, w // 2, w],
        stem_strides=[2, 1, 1, 2],
        strides=[1, 2, 2, 2])
    bad = [
        f'{k} {list(arch[k])} != {v}' for k, v in wanted.items()
        if list(arch[k]) != v
    ]
    if bad:
        raise ValueError('timm cannot build this arch: ' + '; '.join(bad))
    return NfCfg(
        depths=tuple(arch['depths']),
        channels=tuple(arch['widths']),
        alpha=arch['alpha'],
        stem_type='deep_quad',
        stem_chs=w,
        group_size=arch['group_width'],
        bottle_ratio=arch['bottleneck_ratio'],
        extra_conv=True,
        gamma_in_act=True,
        same_padding=True,
        skipinit=True,
        num_features=int(arch['widths'][-1] * arch['final_expansion']),
        act_layer='gelu',
        attn_layer='se',
        attn_kwargs=dict(rd_ratio=arch['se_ratio']))


def build_timm(arch,
               num_classes: int = 1000,
               dropout: float = 0.,
               drop_path_rate: float = 0.) -> nn.Module:
    """timm's ``dm_nfnet_<arch>`` (or its model ``arch`` if a timm name), or a
    ``NormFreeNet`` for an arch dict."""
    import timm
    from timm.models.nfnet import NormFreeNet

    from nfnet_mm.converters import TIMM_MODELS
    if isinstance(arch, dict):
        return NormFreeNet(
            timm_cfg_from_arch(arch),
            num_classes=num_classes,
            drop_rate=dropout,
            drop_path_rate=drop_path_rate)
    return timm.create_model(
        arch if arch in TIMM_MODELS else f'dm_nfnet_{arch}',
        num_classes=num_classes,
        drop_rate=dropout,
        drop_path_rate=drop_path_rate)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A markdown table; floats to 3 digits (0.1 from 100 on), None as n/a."""

    def cell(v):
        if isinstance(v, float):
            return f'{v:.1f}' if abs(v) >= 100 else f'{v:.3g}'
        return 'n/a' if v is None else str(v)

    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(cell(v) for v in row) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'


def write_json(path: Optional[str], result: Dict) -> None:
    """Write ``result`` as indented JSON to ``path`` (if given)."""
    if path:
        with open(path, 'w') as f:
            json.dump(result, f, indent=2)
            f.write('\n')


def measure_parser(doc: str, arch: str, batch: int, img_size: int, steps: int,
                   warmup: int):
    """The options every measurement's command line shares, with a tool's
    defaults; :func:`parse_measure_args` reads them."""
    import argparse
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument('--arch', default=arch, help="f0..f6 or 'tiny'")
    for flag, default in (('--batch', batch), ('--img-size', img_size),
                          ('--steps', steps), ('--warmup', warmup)):
        p.add_argument(flag, type=int, default=default)
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, help='torch.set_num_threads')
    p.add_argument('--out', help='JSON output')
    return p


def parse_measure_args(parser, argv=None):
    """Parse, then apply ``--threads``."""
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args

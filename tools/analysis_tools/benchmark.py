"""Training and inference benchmark of our NFNets side by side with timm's.

One run times a full training step (forward, backward, AGC, optimizer step)
of our classifier (``NFNet`` + ``GlobalAveragePooling`` + ``NFNetClsHead``,
SGD with Nesterov momentum wrapped in our ``AGCOptimWrapper``) and of timm's
``dm_nfnet_f*`` (timm's own ``adaptive_clip_grad`` + ``torch.optim.SGD``),
on tensors already on the device. The repetitions of the implementations are
interleaved (their order alternates every repetition), so that both see the
same machine state; each reported time is the median of ``--steps`` steps
after ``--warmup`` warm-up steps (the paper's protocol). Inference is timed
the same way in eval mode under ``torch.no_grad()``: ours as trained, ours
after ``switch_to_deploy()`` (weight standardisation folded) and timm's.

Examples::

    # CPU, ratios only (absolute CPU times depend on the machine's load)
    python tools/analysis_tools/benchmark.py f0 --batch 4 --img-size 128 \
        --steps 10 --warmup 3 --device cpu --out f0_cpu.json
    # GPU, as in docs/benchmarks.md
    python tools/analysis_tools/benchmark.py f0 --batch 256 --dtype bf16 \
        --channels-last --compile --device cuda --out f0_bs256_compile.json
    # CI smoke run: tiny arch, batch 2, 32 px, 2 warm-up + 3 steps
    python tools/analysis_tools/benchmark.py --quick --out quick.json

What-if runners for speed work: ``--padding same,symmetric`` (our SAME
padding against symmetric padding) and ``--ws-variants centred,batch_norm``
(copies of our model whose convolutions standardise their weights another
way); ``--compile --timm-eager`` compares ours compiled with timm eager.

Outputs a table on stdout, a JSON file (``--out``) and a markdown snippet
(``--md``, for ``docs/benchmarks.md``) naming the device and the versions.
"""
import argparse
import contextlib
import copy
import json
import math
import platform
import shlex
import statistics
import sys
import time
import types
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    'VARIANTS', 'QUICK_ARCH', 'PEAK_TFLOPS', 'WS_VARIANTS', 'parse_args',
    'main',
    'run_benchmark', 'build_ours', 'build_timm', 'timm_cfg_from_arch',
    'count_train_flops', 'device_peak_tflops', 'format_markdown'
]

# Variant -> (train px, test px, dropout rate), from the paper (Table 2).
VARIANTS = {
    'f0': (192, 256, 0.2),
    'f1': (224, 320, 0.3),
    'f2': (256, 352, 0.4),
    'f3': (320, 416, 0.4),
    'f4': (384, 512, 0.5),
    'f5': (416, 544, 0.5),
    'f6': (448, 576, 0.5),
}

# A tiny arch whose stem follows timm's 'deep_quad' stem (widths w/8, w/4,
# w/2, w), so that timm builds exactly the same network for the comparison.
QUICK_ARCH = dict(
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

# Dense peak throughput in TFLOP/s, per (GPU name substring, precision). The
# first matching substring wins, so the more specific names come first.
# 'tf32' applies to fp32 runs with cuDNN/cuBLAS TF32 enabled.
PEAK_TFLOPS = [
    ('H100 PCIe', dict(bf16=756.0, fp16=756.0, tf32=378.0, fp32=51.2)),
    ('H100 NVL', dict(bf16=835.0, fp16=835.0, tf32=417.5, fp32=60.0)),
    ('H100', dict(bf16=989.4, fp16=989.4, tf32=494.7, fp32=66.9)),
    ('H200', dict(bf16=989.4, fp16=989.4, tf32=494.7, fp32=66.9)),
    ('A100', dict(bf16=312.0, fp16=312.0, tf32=156.0, fp32=19.5)),
    ('V100', dict(bf16=None, fp16=125.0, tf32=None, fp32=15.7)),
]

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16,
          'fp16': torch.float16}


def _ws_centred(conv: nn.Module) -> torch.Tensor:
    """Eq. 1 without ``var_mean``: ``var * fan_in == ||w - mean||^2``."""
    w = conv.weight
    centred = w - w.mean(dim=(1, 2, 3), keepdim=True)
    sq = torch.linalg.vector_norm(centred, dim=(1, 2, 3), keepdim=True)
    scale = torch.rsqrt(sq.square().clamp(min=conv.eps))
    return centred * (scale * conv.gain.view(-1, 1, 1, 1))


def _ws_batch_norm(conv: nn.Module) -> torch.Tensor:
    """Eq. 1 as one ``F.batch_norm`` call (timm's formulation; the eps is
    added to ``var`` as ``eps / fan_in`` instead of a clamp)."""
    w = conv.weight
    fan_in = w[0].numel()
    out = F.batch_norm(
        w.reshape(1, w.shape[0], -1), None, None,
        weight=conv.gain * fan_in**-0.5, training=True, momentum=0.,
        eps=conv.eps / fan_in)
    return out.reshape_as(w)


# Alternative weight standardisations, for `--ws-variants` what-if runners.
WS_VARIANTS = {'centred': _ws_centred, 'batch_norm': _ws_batch_norm}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Time NFNet training/inference steps, ours vs timm.')
    parser.add_argument(
        'arch', nargs='?', default=None,
        help=f'variant ({", ".join(VARIANTS)}) or an arch dict as JSON')
    parser.add_argument('--batch', type=int, default=None,
                        help='batch size (default 32, 2 with --quick)')
    parser.add_argument(
        '--img-size', type=int, default=None,
        help="image size (default: the variant's train resolution)")
    parser.add_argument('--dtype', default='fp32', choices=list(DTYPES),
                        help='autocast dtype (fp32 = no autocast)')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile both models')
    parser.add_argument(
        '--timm-eager', action='store_true',
        help='with --compile, keep timm eager (ours compiled vs timm eager)')
    parser.add_argument('--sam', action='store_true',
                        help='also time our SAM training step')
    parser.add_argument('--sam-fraction', type=float, default=0.2,
                        help='share of the batch used for the SAM ascent')
    parser.add_argument('--sam-rho', type=float, default=0.05)
    parser.add_argument('--steps', type=int, default=None,
                        help='timed steps (default 20, 3 with --quick)')
    parser.add_argument('--warmup', type=int, default=None,
                        help='warm-up steps (default 5, 2 with --quick)')
    parser.add_argument('--device', default=None,
                        help='cuda or cpu (default: cuda if available)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads on CPU')
    parser.add_argument(
        '--padding', default='same',
        help="our conv padding(s), comma separated: 'same', 'symmetric' "
        "(each is one more 'ours' runner)")
    parser.add_argument(
        '--ours-act', default=None, choices=['tanh', 'erf'],
        help="our GELU approximation (default: the backbone's default)")
    parser.add_argument(
        '--ws-variants', default='',
        help="what-if runners: copies of our model whose convs standardise "
        "their weights another way, comma separated: 'centred' (same maths "
        "without var_mean), 'batch_norm' (timm's formulation)")
    parser.add_argument('--drop-path-rate', type=float, default=0.,
                        help='stochastic depth, applied to both models')
    parser.add_argument('--no-timm', action='store_true',
                        help='time ours only')
    parser.add_argument('--no-agc-ablation', action='store_true',
                        help='skip the runs without AGC (AGC share)')
    parser.add_argument('--no-inference', action='store_true')
    parser.add_argument('--no-train', action='store_true')
    parser.add_argument('--no-flops', action='store_true',
                        help='skip FLOP counting (MFU n/a)')
    parser.add_argument(
        '--explain', action='store_true',
        help='count torch.compile graph breaks (torch._dynamo.explain)')
    parser.add_argument('--quick', action='store_true',
                        help='CI mode: tiny arch, batch 2, 32 px, cpu, fp32')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default=None, help='JSON output path')
    parser.add_argument('--md', default=None,
                        help='markdown snippet output path')
    args = parser.parse_args(argv)

    if args.quick:
        if args.arch is None:
            args.arch = json.dumps(QUICK_ARCH)
        args.batch = args.batch or 2
        args.img_size = args.img_size or 32
        args.steps = args.steps or 3
        args.warmup = 2 if args.warmup is None else args.warmup
        args.device = args.device or 'cpu'
    if args.arch is None:
        parser.error('give a variant or an arch dict, or --quick')
    args.batch = args.batch or 32
    args.steps = args.steps or 20
    args.warmup = 5 if args.warmup is None else args.warmup
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.dtype == 'fp16' and not args.device.startswith('cuda'):
        parser.error('--dtype fp16 needs --device cuda (loss scaling with '
                     "MMEngine's AmpOptimWrapper); on CPU use fp32 or bf16")
    if args.steps < 1 or args.warmup < 0 or args.batch < 1:
        parser.error(f'need --steps >= 1, --warmup >= 0, --batch >= 1; got '
                     f'{args.steps}, {args.warmup}, {args.batch}')
    if not 0. < args.sam_fraction <= 1.:
        parser.error(f'--sam-fraction must be in (0, 1], got '
                     f'{args.sam_fraction}')
    paddings = [p.strip() for p in args.padding.split(',') if p.strip()]
    bad = [p for p in paddings if p not in ('same', 'symmetric')]
    if bad or not paddings:
        parser.error(f"--padding: bad value(s) {bad or args.padding!r}; "
                     "valid: 'same', 'symmetric'")
    args.paddings = paddings
    ws_variants = [v.strip() for v in args.ws_variants.split(',') if v.strip()]
    bad = [v for v in ws_variants if v not in WS_VARIANTS]
    if bad:
        parser.error(f'--ws-variants: bad value(s) {bad}; valid: '
                     f'{", ".join(WS_VARIANTS)}')
    args.ws_variants = ws_variants

    arch = args.arch.strip()
    if arch.startswith('{'):
        try:
            args.arch_cfg = json.loads(arch)
        except json.JSONDecodeError as err:
            parser.error(f'arch is not valid JSON: {err}')
        args.variant = None
    else:
        if arch.lower() not in VARIANTS:
            parser.error(f'unknown variant {arch!r}; valid: '
                         f'{", ".join(VARIANTS)} or an arch dict as JSON')
        args.arch_cfg = arch.lower()
        args.variant = arch.lower()
    if args.img_size is None:
        if args.variant is None:
            parser.error('--img-size is required with an arch dict')
        args.img_size = VARIANTS[args.variant][0]
    return args


# ----------------------------------------------------------------- models
def _dropout(args) -> float:
    return VARIANTS[args.variant][2] if args.variant else 0.


def build_ours(arch, padding: str = 'same', act: Optional[str] = None,
               drop_path_rate: float = 0., dropout: float = 0.,
               num_classes: int = 1000) -> nn.Module:
    """Our ``ImageClassifier`` (NFNet + GAP + NFNetClsHead)."""
    import nfnet_mm  # noqa: F401  (registers our modules)
    from mmpretrain.registry import MODELS
    backbone = dict(type='NFNet', arch=arch, padding=padding,
                    drop_path_rate=drop_path_rate)
    if act is not None:
        backbone['act_cfg'] = dict(type='GELU', approximate={
            'tanh': 'tanh', 'erf': 'none'}[act])
    if isinstance(arch, dict):
        in_ch = int(arch['widths'][-1] * arch['final_expansion'])
    else:
        in_ch = 3072  # 2 x 1536 for every F variant
    cls = dict(
        type='ImageClassifier',
        backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='NFNetClsHead', num_classes=num_classes,
                  in_channels=in_ch, dropout_rate=dropout))
    return MODELS.build(cls)


def timm_cfg_from_arch(arch: Dict):
    """timm ``NfCfg`` building the same network as our arch dict.

    Raises:
        ValueError: if timm's NFNet family cannot express the arch (its stem
            is 'deep_quad': widths w/8, w/4, w/2, w, strides 2, 1, 1, 2; its
            stage strides are 1, 2, 2, 2).
    """
    from timm.models.nfnet import NfCfg
    w = arch['stem_widths'][-1]
    problems = []
    if list(arch['stem_widths']) != [w // 8, w // 4, w // 2, w]:
        problems.append(f"stem_widths {arch['stem_widths']} != "
                        f'[{w // 8}, {w // 4}, {w // 2}, {w}]')
    if list(arch['stem_strides']) != [2, 1, 1, 2]:
        problems.append(f"stem_strides {arch['stem_strides']} != [2, 1, 1, 2]")
    if list(arch['strides']) != [1, 2, 2, 2]:
        problems.append(f"strides {arch['strides']} != [1, 2, 2, 2]")
    if problems:
        raise ValueError('timm cannot build this arch: ' + '; '.join(problems))
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


def build_timm(arch, drop_path_rate: float = 0., dropout: float = 0.,
               num_classes: int = 1000) -> nn.Module:
    """timm's ``dm_nfnet_f*`` (or a ``NormFreeNet`` for an arch dict)."""
    import timm
    if isinstance(arch, dict):
        from timm.models.nfnet import NormFreeNet
        return NormFreeNet(timm_cfg_from_arch(arch), num_classes=num_classes,
                           drop_rate=dropout, drop_path_rate=drop_path_rate)
    return timm.create_model(f'dm_nfnet_{arch}', num_classes=num_classes,
                             drop_rate=dropout,
                             drop_path_rate=drop_path_rate)


def _swap_ws(model: nn.Module, fn: Callable) -> None:
    """Make every ``ScaledWSConv2d`` of ``model`` standardise with ``fn``."""
    from nfnet_mm.models.layers.ws_conv import ScaledWSConv2d
    for module in model.modules():
        if isinstance(module, ScaledWSConv2d):
            module.get_weight = types.MethodType(
                lambda self: self.weight if self.deploy else fn(self),
                module)


def _ours_forward(model: nn.Module) -> Callable:
    def forward(x):
        return model.head(model.extract_feat(x))
    return forward


def _agc_param_filter(model: nn.Module, exclude=('head.fc.weight', )):
    return [p for n, p in model.named_parameters()
            if p.requires_grad and n not in exclude]


def _build_ours_optim(model, lr, agc: bool, dtype: str, device: str):
    """Our optimizer wrapper: SGD + nesterov inside ``AGCOptimWrapper``."""
    from nfnet_mm.engine.optimizers import agc as agc_mod
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9,
                                nesterov=True)
    agc_cfg = (dict(clipping=0.01, eps=1e-3, exclude=['head.fc.weight'])
               if agc else None)
    if dtype == 'fp16' or (dtype == 'bf16' and device.startswith('cuda')):
        # what `tools/train.py --amp` uses (MMEngine's AMP needs CUDA; on
        # CPU bf16 runs under the benchmark's own autocast)
        wrapper = agc_mod.AmpAGCOptimWrapper(
            optimizer=optimizer, agc=agc_cfg,
            dtype={'fp16': 'float16', 'bf16': 'bfloat16'}[dtype])
    else:
        wrapper = agc_mod.AGCOptimWrapper(optimizer=optimizer, agc=agc_cfg)
    wrapper.bind_model(model)  # parameter names, for `exclude`
    return wrapper


# --------------------------------------------------------------- timing
class Timer:
    """Wall-clock timing of one callable, synchronised on CUDA."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == 'cuda'

    def __call__(self, fn: Callable) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if self.cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1e3


class Runner:
    """One thing to time: a name, a step callable and its bookkeeping."""

    def __init__(self, name: str, step: Callable, model: nn.Module,
                 optim_state: Callable = lambda: 0):
        self.name = name
        self.step = step
        self.model = model
        self.optim_state = optim_state
        self.times: List[float] = []
        self.peak_bytes: Optional[int] = None
        self.error: Optional[str] = None


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors
               if isinstance(t, torch.Tensor))


def _optim_state_bytes(optimizer) -> int:
    total = 0
    for state in optimizer.state.values():
        total += _tensor_bytes(state.values())
    return total


def _measure_peak(runner: Runner, device: torch.device) -> Optional[int]:
    """Own footprint of one step: peak above the resident memory + state.

    The models live on the device together, so the raw peak would count
    the other model too: we take the peak during this runner's step above
    what was allocated right before it, plus its parameters, buffers and
    optimizer state (gradients are freed between steps, so they are inside
    the step's peak).
    """
    if device.type != 'cuda':
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    runner.step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated(device) - before
    state = _tensor_bytes(runner.model.parameters()) + _tensor_bytes(
        runner.model.buffers()) + runner.optim_state()
    return peak + state


def _time_interleaved(runners: List[Runner], timer: Timer, warmup: int,
                      steps: int, device: torch.device) -> None:
    for i in range(warmup + steps):
        order = runners if i % 2 == 0 else runners[::-1]
        for r in order:
            if r.error:
                continue
            try:
                ms = timer(r.step)
            except Exception as err:  # report, keep timing the others
                r.error = f'{type(err).__name__}: {err}'
                continue
            if i >= warmup:
                r.times.append(ms)
    for r in runners:
        if not r.error:
            r.peak_bytes = _measure_peak(r, device)


# ----------------------------------------------------------------- flops
def count_train_flops(forward: Callable, model: nn.Module, x: torch.Tensor,
                      y: torch.Tensor, train: bool = True) -> int:
    """FLOPs of one step (forward, and backward if ``train``), counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (matmuls/convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.train(train)
    try:
        with counter:
            if train:
                loss = F.cross_entropy(forward(x).float(), y)
                loss.backward()
            else:
                with torch.no_grad():
                    forward(x)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return int(counter.get_total_flops())


def device_peak_tflops(device: torch.device, dtype: str) -> Optional[float]:
    """Dense peak TFLOP/s of a CUDA device for ``dtype``; None if unknown."""
    if device.type != 'cuda':
        return None
    name = torch.cuda.get_device_name(device)
    key = dtype
    if dtype == 'fp32' and torch.backends.cudnn.allow_tf32:
        key = 'tf32'  # convolutions run on TF32 tensor cores
    for sub, peaks in PEAK_TFLOPS:
        if sub in name:
            return peaks.get(key)
    return None


# ----------------------------------------------------------------- main
def _environment(device: torch.device) -> Dict:
    import importlib
    versions = {'python': platform.python_version()}
    for mod in ('torch', 'timm', 'mmengine', 'mmpretrain', 'mmcv',
                'nfnet_mm'):
        try:
            versions[mod] = importlib.import_module(mod).__version__
        except Exception:
            versions[mod] = 'n/a'
    if device.type == 'cuda':
        name = torch.cuda.get_device_name(device)
        versions['cuda'] = torch.version.cuda
        versions['cudnn'] = str(torch.backends.cudnn.version())
    else:
        name = platform.processor() or 'cpu'
        try:
            with open('/proc/cpuinfo') as f:
                for line in f:
                    if line.startswith('model name'):
                        name = line.split(':', 1)[1].strip()
                        break
        except OSError:
            pass
        name = f'{name} ({torch.get_num_threads()} threads)'
    return dict(device_name=name, versions=versions)


def _summary(r: Runner, batch: int, flops: Optional[int],
             peak_tflops: Optional[float]) -> Dict:
    if r.error or not r.times:
        return dict(error=r.error or 'no timed steps')
    ms = statistics.median(r.times)
    out = dict(
        ms_per_step=ms,
        img_per_s=batch / ms * 1e3,
        ms_all=r.times,
        ms_min=min(r.times),
        peak_mem_mb=(None if r.peak_bytes is None else r.peak_bytes / 2**20),
        flops_per_step=flops,
    )
    out['mfu'] = (flops / (ms * 1e-3) / (peak_tflops * 1e12)
                  if flops and peak_tflops else None)
    return out


def _explain(fn: Callable, x: torch.Tensor) -> Dict:
    import torch._dynamo as dynamo
    dynamo.reset()
    try:
        exp = dynamo.explain(fn)(x)
    except Exception as err:
        return dict(error=f'{type(err).__name__}: {err}')
    reasons = []
    for br in exp.break_reasons[:10]:
        reasons.append(str(getattr(br, 'reason', br)).splitlines()[0])
    return dict(graph_count=exp.graph_count,
                graph_break_count=exp.graph_break_count,
                op_count=exp.op_count, break_reasons=reasons)


def run_benchmark(args: argparse.Namespace) -> Dict:
    """Build the models, time them interleaved, return the results dict."""
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError(f'--device {args.device}: CUDA is not available')
    if args.threads and device.type == 'cpu':
        torch.set_num_threads(args.threads)
    if args.compile and args.warmup < 2:
        print('note: --compile with < 2 warm-up steps times the compilation')
    amp_dtype = DTYPES[args.dtype]
    autocast = (torch.autocast(device.type, dtype=amp_dtype)
                if args.dtype != 'fp32' else contextlib.nullcontext())
    fmt = (torch.channels_last
           if args.channels_last else torch.contiguous_format)
    batch, size = args.batch, args.img_size
    x = torch.randn(batch, 3, size, size, device=device).contiguous(
        memory_format=fmt)
    y = torch.randint(0, 1000, (batch, ), device=device)
    lr = 0.1 * batch / 256
    dropout = _dropout(args)

    models = {}  # name -> (model, forward)
    for pad in args.paddings:
        model = build_ours(args.arch_cfg, padding=pad, act=args.ours_act,
                           drop_path_rate=args.drop_path_rate,
                           dropout=dropout)
        name = 'ours' if len(args.paddings) == 1 else f'ours[{pad}]'
        models[name] = model
    for variant in args.ws_variants:
        base = next(iter(models.values()))
        model = copy.deepcopy(base)  # same weights
        _swap_ws(model, WS_VARIANTS[variant])
        models[f'ours[ws={variant}]'] = model
    if not args.no_timm:
        models['timm'] = build_timm(args.arch_cfg, args.drop_path_rate,
                                    dropout)
    for m in models.values():
        m.to(device=device, memory_format=fmt)
    params = {n: sum(p.numel() for p in m.parameters())
              for n, m in models.items()}

    def fwd_of(name, model):
        fwd = _ours_forward(model) if name.startswith('ours') else model
        return fwd

    env = _environment(device)
    peak_tflops = device_peak_tflops(device, args.dtype)
    result = dict(
        env=env,
        settings=dict(
            arch=args.arch_cfg, batch=batch, img_size=size, dtype=args.dtype,
            channels_last=args.channels_last, compile=args.compile,
            timm_eager=args.timm_eager,
            device=str(device), steps=args.steps, warmup=args.warmup,
            paddings=args.paddings, ws_variants=args.ws_variants,
            ours_act=args.ours_act, sam=args.sam,
            sam_fraction=args.sam_fraction, sam_rho=args.sam_rho,
            drop_path_rate=args.drop_path_rate, dropout=dropout,
            threads=torch.get_num_threads(),
            peak_tflops=peak_tflops),
        params=params,
        train={}, infer={}, ratios={}, explain={})

    # FLOPs (eager, batch 1, scaled: convolution/matmul FLOPs are linear in
    # the batch) -- counted once per model.
    flops_train, flops_infer = {}, {}
    if not args.no_flops:
        for name, m in models.items():
            fwd = fwd_of(name, m)
            with autocast:
                flops_train[name] = batch * count_train_flops(
                    fwd, m, x[:1], y[:1], train=True)
                flops_infer[name] = batch * count_train_flops(
                    fwd, m, x[:1], y[:1], train=False)

    if args.explain:
        for name, m in models.items():
            m.eval()
            with torch.no_grad(), autocast:
                result['explain'][name] = _explain(fwd_of(name, m), x)

    timer = Timer(device)
    if not args.no_train:
        runners = _train_runners(args, models, fwd_of, x, y, lr, autocast,
                                 device)
        _time_interleaved(runners, timer, args.warmup, args.steps, device)
        for r in runners:
            base = r.name.split('+')[0].split(' ')[0]
            # a SAM step does more work than one step: no MFU for it
            flops = None if '+SAM' in r.name else flops_train.get(base)
            result['train'][r.name] = _summary(r, batch, flops, peak_tflops)
    if not args.no_inference:
        runners = _infer_runners(args, models, fwd_of, x, autocast)
        _time_interleaved(runners, timer, args.warmup, args.steps, device)
        for r in runners:
            base = r.name.split(' ')[0]
            result['infer'][r.name] = _summary(
                r, batch, flops_infer.get(base), peak_tflops)
    result['ratios'] = _ratios(result)
    return result


def _compiles(args, name: str) -> bool:
    """Whether runner ``name`` is compiled (``--compile``/``--timm-eager``)."""
    return args.compile and not (name == 'timm' and args.timm_eager)


def _train_runners(args, models, fwd_of, x, y, lr, autocast, device):
    runners = []
    agc_variants = [True] if args.no_agc_ablation else [True, False]
    for name, model in models.items():
        ours = name.startswith('ours')
        model.train()
        fwd = fwd_of(name, model)
        if _compiles(args, name):
            fwd = torch.compile(fwd)
        for agc in agc_variants:
            label = name if agc else f'{name} (no AGC)'
            if ours:
                wrapper = _build_ours_optim(model, lr, agc, args.dtype,
                                            args.device)

                def step(fwd=fwd, wrapper=wrapper, model=model):
                    with wrapper.optim_context(model), autocast:
                        logits = fwd(x)
                    loss = F.cross_entropy(logits.float(), y)
                    wrapper.update_params(loss)

                runners.append(Runner(
                    label, step, model,
                    lambda w=wrapper: _optim_state_bytes(w.optimizer)))
            else:
                from timm.utils.agc import adaptive_clip_grad
                opt = torch.optim.SGD(model.parameters(), lr=lr,
                                      momentum=0.9, nesterov=True)
                scaler = (torch.amp.GradScaler(device.type)
                          if args.dtype == 'fp16' else None)
                clip_params = _agc_param_filter(model, ('head.fc.weight', ))

                def step(fwd=fwd, opt=opt, scaler=scaler, agc=agc,
                         clip_params=clip_params):
                    with autocast:
                        logits = fwd(x)
                    loss = F.cross_entropy(logits.float(), y)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.unscale_(opt)
                    else:
                        loss.backward()
                    if agc:
                        adaptive_clip_grad(clip_params, 0.01, 1e-3)
                    if scaler is not None:
                        scaler.step(opt)
                        scaler.update()
                    else:
                        opt.step()
                    opt.zero_grad(set_to_none=True)

                runners.append(Runner(
                    label, step, model,
                    lambda o=opt: _optim_state_bytes(o)))
        if ours and args.sam:
            runners += _sam_runners(args, name, model, x, y, lr, autocast)
    return runners


def _mmengine_batch(x: torch.Tensor, y: torch.Tensor) -> Dict:
    """The batch as MMEngine's data loader would give it (on the device)."""
    from mmpretrain.structures import DataSample
    samples = [DataSample().set_gt_label(int(label)) for label in y.cpu()]
    return dict(inputs=x, data_samples=samples)


def _sam_runners(args, name, model, x, y, lr, autocast) -> List[Runner]:
    """Our SAM step and, as its baseline, the plain MMEngine train step.

    Both go through MMEngine's path (data pre-processor, ``mode='loss'``,
    the head's loss), eager: ``sam_train_step`` with ``SAMOptimWrapper``
    (ascent on ``--sam-fraction`` of the batch) vs ``model.train_step``
    with ``AGCOptimWrapper``.
    """
    label = f'{name}+SAM{args.sam_fraction:g}'
    base = f'{name} (train_step)'
    amp = args.dtype == 'fp16' or (args.dtype == 'bf16'
                                   and args.device.startswith('cuda'))
    if args.dtype == 'fp16' and not args.device.startswith('cuda'):
        runner = Runner(label, lambda: None, model)
        runner.error = 'fp16 SAM needs CUDA (AmpSAMOptimWrapper)'
        return [runner]
    try:
        from nfnet_mm.engine.optimizers.sam import (AmpSAMOptimWrapper,
                                                    SAMOptimWrapper,
                                                    sam_train_step)
    except ImportError as err:
        runner = Runner(label, lambda: None, model)
        runner.error = f'SAM not available: {err}'
        return [runner]
    agc = dict(clipping=0.01, eps=1e-3, exclude=['head.fc.weight'])
    data = _mmengine_batch(x, y)

    sam_opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9,
                              nesterov=True)
    sam_kwargs = dict(optimizer=sam_opt, rho=args.sam_rho,
                      ascent_fraction=args.sam_fraction, agc=agc)
    if amp:
        sam_wrapper = AmpSAMOptimWrapper(
            dtype={'fp16': 'float16', 'bf16': 'bfloat16'}[args.dtype],
            **sam_kwargs)
    else:
        sam_wrapper = SAMOptimWrapper(**sam_kwargs)
    sam_wrapper.bind_model(model)
    plain = _build_ours_optim(model, lr, True, args.dtype, args.device)

    def sam_step():
        with autocast:
            sam_train_step(model, data, sam_wrapper)

    def plain_step():
        with autocast:
            model.train_step(data, plain)

    return [
        Runner(base, plain_step, model,
               lambda: _optim_state_bytes(plain.optimizer)),
        Runner(label, sam_step, model, lambda: _optim_state_bytes(sam_opt)),
    ]


def _infer_runners(args, models, fwd_of, x, autocast):
    runners = []
    for name, model in models.items():
        variants = [(name, model)]
        if name.startswith('ours') and '[ws=' not in name:
            deployed = copy.deepcopy(model)
            deployed.backbone.switch_to_deploy()
            variants.append((f'{name} (deploy)', deployed))
        for label, m in variants:
            m.eval()
            fwd = fwd_of(name, m)
            if _compiles(args, name):
                fwd = torch.compile(fwd)

            def step(fwd=fwd):
                with torch.no_grad(), autocast:
                    fwd(x)

            runners.append(Runner(label, step, m))
    return runners


def _ratios(result: Dict) -> Dict:
    """our/timm speed (img/s, > 1 = ours faster) and memory ratios."""
    ratios = {}

    def ok(d, k):
        return k in d and 'error' not in d[k]

    for section in ('train', 'infer'):
        res = result[section]
        if not ok(res, 'timm'):
            continue
        for name, r in res.items():
            if not name.startswith('ours') or 'error' in r:
                continue
            timm_key = 'timm (no AGC)' if name.endswith('(no AGC)') else 'timm'
            if not ok(res, timm_key):
                continue
            t = res[timm_key]
            ratios[f'{section}: {name} / {timm_key} speed'] = (
                r['img_per_s'] / t['img_per_s'])
            # median of the per-repetition ratios: the two were timed back
            # to back, so this cancels slow drifts of the machine's load
            if len(r['ms_all']) == len(t['ms_all']):
                ratios[f'{section}: {name} / {timm_key} speed (paired)'] = (
                    statistics.median(
                        b / a for a, b in zip(r['ms_all'], t['ms_all'])))
            if r['peak_mem_mb'] and t['peak_mem_mb']:
                ratios[f'{section}: {name} / {timm_key} peak mem'] = (
                    r['peak_mem_mb'] / t['peak_mem_mb'])
    train = result['train']
    for name in list(train):
        if name.endswith('(no AGC)'):
            base = name[:-len(' (no AGC)')]
            if ok(train, name) and ok(train, base):
                ratios[f'train: {base} AGC share of step'] = 1 - (
                    train[name]['ms_per_step'] / train[base]['ms_per_step'])
        if '+SAM' in name and ok(train, name):
            base = name.split('+')[0] + ' (train_step)'
            if ok(train, base):
                ratios[f'train: {name} / {base} step time'] = (
                    train[name]['ms_per_step'] / train[base]['ms_per_step'])
    return ratios


def _fmt(v, spec='.1f') -> str:
    if v is None:
        return 'n/a'
    if isinstance(v, float) and math.isnan(v):
        return 'n/a'
    return format(v, spec)


def format_markdown(result: Dict, command: Optional[str] = None) -> str:
    """Markdown snippet of one run for docs/benchmarks.md."""
    s = result['settings']
    env = result['env']
    arch = s['arch'] if isinstance(s['arch'], str) else 'custom arch'
    v = env['versions']
    lines = [
        f"**{arch.upper()}**, batch {s['batch']}, {s['img_size']} px, "
        f"{s['dtype']}, channels_last={s['channels_last']}, "
        f"compile={s['compile']}"
        f"{' (timm eager)' if s['compile'] and s.get('timm_eager') else ''}"
        f", {s['warmup']} warm-up + {s['steps']} "
        f"steps (median), on {env['device_name']}; torch {v['torch']}, "
        f"timm {v['timm']}, mmengine {v['mmengine']}, "
        f"mmpretrain {v['mmpretrain']}.", ''
    ]
    if command:
        lines += [f'`{command}`', '']
    lines += ['| mode | runner | ms/step | img/s | peak MiB | MFU |',
              '|---|---|---|---|---|---|']
    for section in ('train', 'infer'):
        for name, r in result[section].items():
            if 'error' in r:
                lines.append(f'| {section} | {name} | error: {r["error"]} '
                             '| | | |')
                continue
            mfu = None if r['mfu'] is None else 100 * r['mfu']
            lines.append(
                f"| {section} | {name} | {_fmt(r['ms_per_step'], '.2f')} | "
                f"{_fmt(r['img_per_s'])} | {_fmt(r['peak_mem_mb'], '.0f')} | "
                f"{_fmt(mfu) + ' %' if mfu is not None else 'n/a'} |")
    if result['ratios']:
        lines += ['', '| ratio | value |', '|---|---|']
        for k, val in result['ratios'].items():
            lines.append(f'| {k} | {val:.3f} |')
    if result.get('explain'):
        lines += ['', '| model | graphs | graph breaks |', '|---|---|---|']
        for k, e in result['explain'].items():
            lines.append(f"| {k} | {e.get('graph_count', 'n/a')} | "
                         f"{e.get('graph_break_count', e.get('error'))} |")
    return '\n'.join(lines) + '\n'


def _print_table(result: Dict) -> None:
    print(f"device: {result['env']['device_name']}")
    print(f"params: {result['params']}")
    print(f"{'mode':6} {'runner':28} {'ms/step':>10} {'img/s':>10} "
          f"{'peak MiB':>9} {'MFU':>7}")
    for section in ('train', 'infer'):
        for name, r in result[section].items():
            if 'error' in r:
                print(f'{section:6} {name:28} error: {r["error"]}')
                continue
            mfu = 'n/a' if r['mfu'] is None else f"{100 * r['mfu']:.1f}%"
            print(f"{section:6} {name:28} {r['ms_per_step']:10.2f} "
                  f"{r['img_per_s']:10.1f} {_fmt(r['peak_mem_mb'], '.0f'):>9}"
                  f" {mfu:>7}")
    for k, v in result['ratios'].items():
        print(f'{k}: {v:.3f}')
    for k, e in result.get('explain', {}).items():
        print(f'explain {k}: {e}')


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    """Entry point; returns the results dict (also written to ``--out``)."""
    args = parse_args(argv)
    result = run_benchmark(args)
    _print_table(result)
    command = 'python tools/analysis_tools/benchmark.py ' + shlex.join(
        sys.argv[1:] if argv is None else list(argv))
    result['command'] = command
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=2)
    md = format_markdown(result, command)
    if args.md:
        with open(args.md, 'w') as f:
            f.write(md)
    return result


if __name__ == '__main__':
    main()

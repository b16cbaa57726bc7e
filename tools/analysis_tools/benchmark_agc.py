"""Time Adaptive Gradient Clipping (eq. 3) on an NFNet's parameter set.

Builds ``ImageClassifier(NFNet(arch), GlobalAveragePooling, NFNetClsHead)``, gives
every parameter a random gradient and times, per device:

- ``agc``: :meth:`AGCOptimWrapper.agc_clip_` (ours, vectorised: one
  ``_foreach_norm`` over all scalars/vectors, one norm kernel per matrix/kernel,
  one kernel chain for all unit scales, one ``_foreach_mul_``);
- ``timm_loop``: ``timm.utils.agc.adaptive_clip_grad``, the per-tensor loop
  (same semantics for our parameter shapes; the results are checked to agree);
- ``loop_inplace``: a minimal per-tensor loop of in-place ops (what the
  vectorisation itself buys, without timm's temporaries);
- ``train_step``: forward + backward + ``AGCOptimWrapper.update_params`` of the
  same model at ``--batch`` x ``--img-size`` (to put the AGC cost in context).

Every timed call starts from the same gradients (restored outside the timed
region); the methods are interleaved, their order rotating every repetition, and
the median is reported, in wall time and in process CPU time (the latter is
steadier on a shared machine; on CUDA only wall time is meaningful). The classifier weight is excluded, as in the paper.

Examples::

    # as in docs/benchmarks.md
    OMP_NUM_THREADS=1 python tools/analysis_tools/benchmark_agc.py --arch f0 \
        --repeats 15 --out agc_f0.json
    # CI smoke run: tiny arch, 2 repetitions, tiny training step
    python tools/analysis_tools/benchmark_agc.py --quick --out agc_ci.json
"""
import argparse
import json
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = ['TINY_ARCH', 'parse_args', 'build_model', 'benchmark_device', 'main']

# The small arch of docs/design.md (tests and demos).
TINY_ARCH = dict(depths=[1, 1, 1, 1], widths=[32, 64, 96, 128], group_width=16,
                 bottleneck_ratio=0.5, se_ratio=0.5, alpha=0.2,
                 stem_widths=[8, 16, 16, 32], stem_strides=[2, 1, 1, 2],
                 strides=[1, 2, 2, 2], final_expansion=2)
CLIPPING, EPS, EXCLUDE = 0.01, 1e-3, ['head.fc.weight']


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='f0',
                        help="NFNet arch: f0..f7 or 'tiny'. Defaults to f0.")
    parser.add_argument('--num-classes', type=int, default=1000,
                        help='Defaults to 1000.')
    parser.add_argument('--devices', nargs='+', default=None,
                        help='Devices to time. Defaults to cpu, plus cuda if '
                        'available.')
    parser.add_argument('--repeats', type=int, default=15,
                        help='Timed AGC calls per method. Defaults to 15.')
    parser.add_argument('--warmup', type=int, default=2, help='Defaults to 2.')
    parser.add_argument('--batch', type=int, default=2,
                        help='Training-step batch. Defaults to 2.')
    parser.add_argument('--img-size', type=int, default=64,
                        help='Training-step image size. Defaults to 64.')
    parser.add_argument('--train-repeats', type=int, default=3,
                        help='Timed training steps. Defaults to 3.')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads. Defaults to unchanged.')
    parser.add_argument('--quick', action='store_true',
                        help='CI smoke run: tiny arch, 2 repeats, 1 image of '
                        '32 px, CPU only.')
    parser.add_argument('--out', default=None, help='JSON output path.')
    args = parser.parse_args(argv)
    if args.quick:
        args.arch, args.num_classes, args.repeats, args.warmup = 'tiny', 10, 2, 1
        args.batch, args.img_size, args.train_repeats = 1, 32, 1
        args.devices = args.devices or ['cpu']
    if args.devices is None:
        args.devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    return args


def build_model(arch: str, num_classes: int) -> torch.nn.Module:
    """The NFNet classifier whose parameters are clipped."""
    import nfnet_mm  # noqa: F401 (registers NFNet, NFNetClsHead)
    from mmpretrain.registry import MODELS
    from nfnet_mm.models.backbones.nfnet import NFNet
    backbone = NFNet(arch=TINY_ARCH if arch == 'tiny' else arch)
    return MODELS.build(
        dict(type='ImageClassifier', backbone=backbone,
             neck=dict(type='GlobalAveragePooling'),
             head=dict(type='NFNetClsHead', num_classes=num_classes,
                       in_channels=backbone.num_features,
                       dropout_rate=0.)))


def _loop_inplace(params: List[torch.Tensor]) -> None:
    """A minimal per-tensor loop: the same eq. 3, one tensor at a time."""
    with torch.no_grad():
        for p in params:
            g = p.grad
            dims = tuple(range(1, p.ndim))
            if dims:
                g_norm = torch.linalg.vector_norm(g, dim=dims, keepdim=True)
                w_norm = torch.linalg.vector_norm(p, dim=dims, keepdim=True)
            else:
                g_norm, w_norm = torch.linalg.vector_norm(
                    g), torch.linalg.vector_norm(p)
            limit = w_norm.clamp_min_(EPS).mul_(CLIPPING)
            g.mul_(torch.where(g_norm > limit, limit / g_norm, 1.))


class _Timer:

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == 'cuda'

    def __call__(self, fn: Callable) -> Tuple[float, float]:
        """Wall and process CPU time of ``fn()`` in ms."""
        if self.cuda:
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        if self.cuda:
            torch.cuda.synchronize()
        return ((time.perf_counter() - start) * 1e3,
                (time.process_time() - cpu_start) * 1e3)


def benchmark_device(args: argparse.Namespace, device: str) -> Dict:
    """Time every method on one device; returns medians in ms and checks."""
    from timm.utils.agc import adaptive_clip_grad

    from nfnet_mm.engine.optimizers import AGCOptimWrapper

    dev = torch.device(device)
    torch.manual_seed(0)
    model = build_model(args.arch, args.num_classes).to(dev)
    named = list(model.named_parameters())
    params = [p for _, p in named]
    clipped = [p for n, p in named if n not in EXCLUDE]
    gen = torch.Generator(device=dev).manual_seed(1)
    # gradients at the weights' scale times 10**U(-2.75, -1.25) per unit: the
    # ratios straddle the threshold 0.01, about half of the units clip
    grads0 = []
    for p in params:
        rms = p.detach().pow(2).mean().sqrt() + 1e-3
        factor = 10**(torch.rand((p.shape[0], ) + (1, ) * (p.ndim - 1)
                                 if p.ndim else (), generator=gen, device=dev)
                      * 1.5 - 2.75)
        grads0.append(
            torch.randn(p.shape, generator=gen, device=dev) * rms * factor)
    agc = dict(clipping=CLIPPING, eps=EPS, exclude=EXCLUDE)
    wrapper = AGCOptimWrapper(torch.optim.SGD(params, lr=1e-3), agc=agc)
    wrapper.bind_model(model)

    def restore() -> None:
        with torch.no_grad():
            for p, g in zip(params, grads0):
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad.copy_(g)

    methods = {
        'agc': wrapper.agc_clip_,
        'timm_loop': lambda: adaptive_clip_grad(clipped, CLIPPING, EPS),
        'loop_inplace': lambda: _loop_inplace(clipped),
    }
    # the methods agree (timm's semantics equal ours for these shapes)
    results = {}
    for name, fn in methods.items():
        restore()
        out = fn()
        if name == 'agc':
            frac = out.tolist()[1]
        results[name] = [p.grad.clone() for p in params]
    max_rel = max(
        ((a - b).norm() / b.norm().clamp_min(1e-30)).item()
        for other in ('timm_loop', 'loop_inplace')
        for a, b in zip(results['agc'], results[other]))
    del results

    timer = _Timer(dev)
    times = {name: [] for name in methods}
    cpu_times = {name: [] for name in methods}
    names = list(methods)
    for rep in range(args.warmup + args.repeats):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            restore()
            wall, cpu = timer(methods[name])
            if rep >= args.warmup:
                times[name].append(wall)
                cpu_times[name].append(cpu)
    med = {name: statistics.median(t) for name, t in times.items()}
    med_cpu = {name: statistics.median(t) for name, t in cpu_times.items()}

    # one training step (forward + backward + AGC + SGD) for scale
    model.train()
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=dev)
    y = torch.randint(0, args.num_classes, (args.batch, ), device=dev)

    def train_step() -> None:
        with wrapper.optim_context(model):
            logits = model.head(model.extract_feat(x))
            loss = F.cross_entropy(logits, y)
        wrapper.update_params(loss)

    step_times = [timer(train_step) for _ in range(1 + args.train_repeats)][1:]
    step_ms = statistics.median(t[0] for t in step_times)
    step_cpu_ms = statistics.median(t[1] for t in step_times)
    return dict(
        device=device,
        num_tensors=len(params),
        num_clipped_tensors=len(clipped),
        num_params=sum(p.numel() for p in params),
        clip_frac=frac,
        max_rel_diff_vs_loops=max_rel,
        agc_ms=med['agc'],
        timm_loop_ms=med['timm_loop'],
        loop_inplace_ms=med['loop_inplace'],
        speedup_vs_timm=med['timm_loop'] / med['agc'],
        speedup_vs_loop_inplace=med['loop_inplace'] / med['agc'],
        agc_cpu_ms=med_cpu['agc'],
        timm_loop_cpu_ms=med_cpu['timm_loop'],
        loop_inplace_cpu_ms=med_cpu['loop_inplace'],
        cpu_speedup_vs_timm=med_cpu['timm_loop'] / med_cpu['agc'],
        train_step_ms=step_ms,
        train_step_cpu_ms=step_cpu_ms,
        agc_share_of_step=med['agc'] / step_ms,
        all_ms=times,
        all_cpu_ms=cpu_times,
    )


def _machine() -> Dict:
    import mmengine
    import timm
    cpu = platform.processor()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f
                       if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    info = dict(python=platform.python_version(), torch=torch.__version__,
                timm=timm.__version__, mmengine=mmengine.__version__,
                platform=platform.platform(), cpu=cpu,
                torch_threads=torch.get_num_threads())
    if torch.cuda.is_available():
        info['gpu'] = torch.cuda.get_device_name()
    return info


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = dict(settings=vars(args), machine=_machine(), results={})
    for device in args.devices:
        out['results'][device] = benchmark_device(args, device)
    rows = [('device', 'tensors', 'params', 'clipped', 'AGC ms', 'timm loop ms',
             'in-place loop ms', 'x timm', 'x loop', 'x timm (CPU time)',
             'train step ms', 'AGC/step')]
    for r in out['results'].values():
        rows.append((r['device'], str(r['num_tensors']),
                     f"{r['num_params'] / 1e6:.2f}M", f"{r['clip_frac']:.2f}",
                     f"{r['agc_ms']:.2f}", f"{r['timm_loop_ms']:.2f}",
                     f"{r['loop_inplace_ms']:.2f}",
                     f"{r['speedup_vs_timm']:.2f}",
                     f"{r['speedup_vs_loop_inplace']:.2f}",
                     f"{r['cpu_speedup_vs_timm']:.2f}",
                     f"{r['train_step_ms']:.1f}",
                     f"{100 * r['agc_share_of_step']:.1f}%"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f'AGC benchmark, arch {args.arch}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} thread(s), medians of {args.repeats}')
    for row in rows:
        print(' | '.join(c.rjust(w) for c, w in zip(row, widths)))
    for r in out['results'].values():
        print(f"{r['device']}: max relative difference vs the loops "
              f"{r['max_rel_diff_vs_loops']:.1e}")
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == '__main__':
    sys.exit(0 if main() else 1)

"""Training and inference of our NFNets against timm's, side by side.

A command line over :func:`lab.benchmarks.measures.speed` (see there and
docs/benchmarks.md). Examples::

    # CPU: paired ratios ours/timm
    python -m lab.benchmark f0 --batch 4 --img-size 128 \
        --device cpu --out f0_cpu.json
    # GPU (one step of lab/gpu_report.sh)
    python -m lab.benchmark f0 --batch 256 --dtype bf16 \
        --channels-last --compile --timm-eager --device cuda
    # any of timm's NF models against timm's model of the same name
    python -m lab.benchmark eca_nfnet_l0 --batch 4 --img-size 128 \
        --device cpu
    # CI smoke run: tiny arch, batch 2, 32 px, 2 warm-up + 3 steps
    python -m lab.benchmark --quick --out quick.json
"""
import argparse
import inspect
import json
import shlex
import sys

import torch

from lab.benchmarks.harness import TINY_ARCH, VARIANTS, write_json
from lab.benchmarks.measures import speed
from lab.benchmarks.report import speed_markdown
from nfnet_mm.converters import TIMM_MODELS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        'arch',
        nargs='?',
        help=f'{", ".join(VARIANTS)}, a timm NF name (eca_nfnet_l0, ...), '
        'tiny or an arch dict (JSON)')
    p.add_argument('--batch', type=int, help='defaults to 32 (2: --quick)')
    p.add_argument(
        '--img-size', type=int, help="defaults to the variant's train size")
    p.add_argument(
        '--dtype',
        default='fp32',
        choices=['fp32', 'bf16'],
        help='autocast dtype (AMP wrappers on CUDA)')
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--compile', action='store_true')
    p.add_argument(
        '--timm-eager',
        action='store_true',
        help='with --compile: timm stays eager')
    p.add_argument(
        '--sam',
        type=float,
        nargs='?',
        const=0.2,
        dest='sam_fraction',
        metavar='FRACTION',
        help='also time our SAM step (ascent fraction, 0.2)')
    p.add_argument('--sam-rho', type=float, default=0.05)
    p.add_argument(
        '--with-cp',
        action='store_true',
        help='also time our training step with per-block checkpointing')
    p.add_argument('--steps', type=int, help='defaults to 20 (3: --quick)')
    p.add_argument('--warmup', type=int, help='defaults to 5 (2: --quick)')
    p.add_argument('--device', help='defaults to cuda if available')
    p.add_argument('--threads', type=int, help='torch.set_num_threads')
    p.add_argument(
        '--padding',
        dest='paddings',
        help="ours with each of 'same,symmetric' (default: the arch's)")
    p.add_argument(
        '--ours-act', choices=['tanh', 'erf'], help='our GELU approximation')
    p.add_argument('--drop-path-rate', type=float, default=0.)
    p.add_argument(
        '--peak-tflops',
        type=float,
        help='device peak for MFU (default: bf16 table)')
    for flag in ('timm', 'agc-ablation', 'train', 'inference'):
        p.add_argument(
            f'--no-{flag}', dest=flag.replace('-', '_'), action='store_false')
    p.add_argument(
        '--explain',
        action='store_true',
        help='count torch.compile graph breaks')
    p.add_argument(
        '--quick',
        action='store_true',
        help='CI: tiny arch, batch 2, 32 px, cpu')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', help='JSON output')
    p.add_argument('--md', help='markdown output')
    args = p.parse_args(argv)
    if args.quick:
        args.arch = args.arch or 'tiny'
        args.batch, args.img_size = args.batch or 2, args.img_size or 32
        args.steps, args.device = args.steps or 3, args.device or 'cpu'
        args.warmup = 2 if args.warmup is None else args.warmup
    if args.arch is None:
        p.error('give a variant or an arch dict, or --quick')
    if args.arch == 'tiny':
        args.arch = json.dumps(TINY_ARCH)
    if args.arch.strip().startswith('{'):
        try:
            args.arch = json.loads(args.arch)
        except json.JSONDecodeError as err:
            p.error(f'arch is not valid JSON: {err}')
        if args.img_size is None:
            p.error('--img-size is required with an arch dict')
    elif args.arch.lower() in VARIANTS:
        args.arch = args.arch.lower()
    elif args.arch in TIMM_MODELS:
        args.img_size = args.img_size or 224
    else:
        p.error(
            f'unknown variant {args.arch!r}; valid: '
            f'{", ".join(VARIANTS)}, a timm NF name (e.g. eca_nfnet_l0, '
            'nf_resnet50; nfnet_mm.converters.TIMM_MODELS), tiny or an arch '
            'dict as JSON')
    args.img_size = args.img_size or VARIANTS.get(args.arch, [None])[0]
    args.batch, args.steps = args.batch or 32, args.steps or 20
    args.warmup = 5 if args.warmup is None else args.warmup
    args.device = args.device or ('cuda'
                                  if torch.cuda.is_available() else 'cpu')
    args.paddings = args.paddings.split(',') if args.paddings else [None]
    if not set(args.paddings) <= {'same', 'symmetric', None}:
        p.error(f"--padding: bad value(s) in {args.paddings}; valid: 'same', "
                "'symmetric'")
    if min(args.batch, args.steps) < 1 or args.warmup < 0:
        p.error('need --batch >= 1, --steps >= 1 and --warmup >= 0')
    if args.sam_fraction is not None and not 0 < args.sam_fraction <= 1:
        p.error(f'--sam must be in (0, 1], got {args.sam_fraction}')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    params = inspect.signature(speed).parameters
    result = speed(**{k: v for k, v in vars(args).items() if k in params})
    result['command'] = 'python -m lab.benchmark ' + \
        shlex.join(sys.argv[1:] if argv is None else argv)
    text = speed_markdown(result)
    print(text)
    write_json(args.out, result)
    if args.md:
        with open(args.md, 'w') as f:
            f.write(text)
    return result


if __name__ == '__main__':
    main()

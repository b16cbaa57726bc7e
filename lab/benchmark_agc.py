"""Time Adaptive Gradient Clipping (eq. 3) on an NFNet's parameters.

Ours (``AGCOptimWrapper``) against timm's per-tensor ``adaptive_clip_grad``
and a minimal in-place loop, from the same gradients every time, and its
share of a training step; see :func:`lab.benchmarks.measures.agc_kernel`.

Examples::

    OMP_NUM_THREADS=1 python -m lab.benchmark_agc --arch f0 \
        --steps 15 --out agc_f0.json
    python -m lab.benchmark_agc --quick  # CI: tiny, 2 steps
"""
from lab.benchmarks.harness import (markdown_table, measure_parser,
                                    parse_measure_args, write_json)
from lab.benchmarks.measures import agc_kernel


def main(argv=None) -> dict:
    p = measure_parser(__doc__, 'f0', batch=2, img_size=64, steps=15, warmup=2)
    p.add_argument(
        '--quick',
        action='store_true',
        help='tiny arch, 10 classes, 2 steps, batch 1, 32 px')
    args = parse_measure_args(p, argv)
    kwargs = dict(
        steps=args.steps,
        warmup=args.warmup,
        batch=args.batch,
        img_size=args.img_size)
    if args.quick:
        args.arch = 'tiny'
        kwargs = dict(steps=2, warmup=1, batch=1, img_size=32, num_classes=10)
    res = agc_kernel(args.arch, args.device, **kwargs)
    ms = res['agc_ms']
    print(f"AGC on {args.arch} ({res['num_params'] / 1e6:.2f}M parameters, "
          f"{res['num_clipped_tensors']}/{res['num_tensors']} tensors "
          f"clipped), {res['env']['device_name']}; max relative difference "
          f"to timm {res['max_rel_diff_vs_timm']:.1e}")
    print(
        markdown_table(('AGC ours ms', 'timm loop ms', 'in-place loop ms',
                        'x timm', 'x loop', 'train step ms', 'AGC / step'),
                       [(ms['ours'], ms['timm'], ms['loop'],
                         res['speedup_vs_timm'], res['speedup_vs_loop'],
                         res['runners']['train_step'].get('ms_per_step'),
                         f"{100 * res['agc_share_of_train_step']:.1f}%")]))
    write_json(args.out, res)
    return res


if __name__ == '__main__':
    main()

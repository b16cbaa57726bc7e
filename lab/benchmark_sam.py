"""Step time of SAM (the paper's appendix A.4) over a plain training step.

MMEngine ``train_step`` of a ``SAMImageClassifier`` with ``AGCOptimWrapper``
(plain) and with ``SAMOptimWrapper`` per ascent fraction, interleaved; see
:func:`lab.benchmarks.measures.sam_cost`. Ratios are paired, in wall
and in process CPU time (steadier on a shared machine with ``--threads 1``).

Examples::

    OMP_NUM_THREADS=1 python -m lab.benchmark_sam \
        --batch 32 --img-size 128 --steps 20 --warmup 3 --threads 1
    python -m lab.benchmark_sam --quick  # CI smoke run
"""
from lab.benchmarks.harness import (markdown_table, measure_parser,
                                    parse_measure_args, write_json)
from lab.benchmarks.measures import sam_cost


def main(argv=None) -> dict:
    p = measure_parser(
        __doc__, 'tiny', batch=32, img_size=64, steps=15, warmup=3)
    p.add_argument('--dtype', default='fp32', choices=['fp32', 'bf16'])
    p.add_argument('--fractions', type=float, nargs='+', default=[0.2, 1.0])
    p.add_argument('--rho', type=float, default=0.05)
    p.add_argument('--agc', action='store_true', help='AGC in every runner')
    p.add_argument(
        '--quick',
        action='store_true',
        help='batch 5, 32 px, 1 warm-up + 2 steps')
    args = parse_measure_args(p, argv)
    if not all(0 < f <= 1 for f in args.fractions):
        p.error(f'--fractions must be in (0, 1], got {args.fractions}')
    if args.quick:
        args.batch, args.img_size, args.steps, args.warmup = 5, 32, 2, 1
    res = sam_cost(
        args.arch,
        args.batch,
        args.img_size,
        args.device,
        args.dtype,
        args.fractions,
        args.rho,
        args.agc,
        steps=args.steps,
        warmup=args.warmup)
    print(f"SAM cost, arch {args.arch} ({res['params']:,} parameters), batch "
          f"{args.batch}, {args.img_size} px, {res['env']['device_name']}")
    print(
        markdown_table(
            ('runner', 'wall ms/step', 'x plain (wall)', 'CPU ms/step',
             'x plain (CPU)'),
            [(name, r.get('ms_per_step', r.get('error')), r.get('x_plain'),
              r.get('cpu_ms_per_step'), r.get('x_plain_cpu'))
             for name, r in res['results'].items()]))
    write_json(args.out, res)
    return res


if __name__ == '__main__':
    main()

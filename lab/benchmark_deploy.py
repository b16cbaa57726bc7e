"""Inference with and without WS folding (``NFNet.switch_to_deploy()``).

Times the classifier as trained (weights standardised on every call) against
after ``switch_to_deploy()``, interleaved, and counts the ATen operators of a
forward pass; see :func:`lab.benchmarks.measures.ws_folding`.

Example (the numbers in docs/benchmarks.md)::

    OMP_NUM_THREADS=1 python -m lab.benchmark_deploy \
        --arch f0 --img-size 256 --batch 2 --steps 7 --warmup 1
"""
from lab.benchmarks.harness import (markdown_table, measure_parser,
                                    parse_measure_args, write_json)
from lab.benchmarks.measures import ws_folding


def main(argv=None) -> dict:
    args = parse_measure_args(
        measure_parser(
            __doc__, 'f0', batch=2, img_size=256, steps=7, warmup=1), argv)
    res = ws_folding(args.arch, args.img_size, args.batch, args.device,
                     args.steps, args.warmup)
    print(f"NFNet {args.arch}, {args.img_size} px, batch {args.batch}, "
          f"{res['env']['device_name']}")
    print(
        markdown_table(
            ('model', 'median ms', 'ATen ops per forward'),
            [(k, r.get('ms_per_step',
                       r.get('error')), res['aten_ops_per_forward'][k])
             for k, r in res['results'].items()]))
    print(f"speed-up (paired): {res['speedup_folded']:.3f}x; max |logit "
          f"difference| {res['max_abs_logit_diff']:.1e} (max |logit| "
          f"{res['max_abs_logit']:.1e})")
    write_json(args.out, res)
    return res


if __name__ == '__main__':
    main()

"""onnxruntime latency of an nfnet_mm classifier, WS folded vs not folded.

Exports the config's model with and without ``backbone.switch_to_deploy()``
(``nfnet_mm.deploy.export_and_check``: checked against PyTorch) and times
``InferenceSession.run`` on CPU with the benchmark harness (interleaved,
median after 2 warm-up runs), each graph with onnxruntime's graph
optimisations on (they constant-fold an unfolded graph's standardisation at
load time) and off (the graph as exported), plus the session creation time.

Usage::

    python tools/deploy/benchmark_onnx.py CONFIG CHECKPOINT \\
        [--shape H W] [--batch B] [--runs N] [--threads T] [--json FILE]
"""
import argparse
import os.path as osp
import sys
import tempfile
import time

import numpy as np
import torch

from nfnet_mm.benchmarks.harness import (Runner, machine_info, markdown_table,
                                         paired_ratio, summary,
                                         time_interleaved, write_json)
from nfnet_mm.deploy import export_and_check, ort_session


def benchmark(config, checkpoint, shape=None, batch=1, runs=10, threads=1,
              opset=17) -> dict:
    """Export the folded and unfolded graphs and time them; a result dict
    with per-graph results and the paired speed-ups ``unfolded / folded``."""
    import onnxruntime
    tmp = tempfile.TemporaryDirectory()
    report = dict(env=machine_info(torch.device('cpu')), settings=dict(
        config=config, checkpoint=checkpoint, batch=batch, runs=runs,
        threads=threads, opset=opset), results={})
    report['env']['versions']['onnxruntime'] = onnxruntime.__version__
    runners = []
    for fold in (True, False):
        name = 'folded' if fold else 'unfolded'
        path = osp.join(tmp.name, f'{name}.onnx')
        rep = export_and_check(config, checkpoint, path, fold=fold,
                               opset=opset, shape=shape,
                               dynamic_batch=batch > 1, threads=threads)
        inputs = np.random.default_rng(0).standard_normal(
            [batch] + rep['input_shape'][1:]).astype(np.float32)
        for opt in (True, False):
            key = name + ('' if opt else ' (ORT opt off)')
            start = time.perf_counter()
            sess = ort_session(path, threads, opt)
            report['results'][key] = dict(
                max_abs_diff=rep['max_abs_diff'], num_nodes=rep['num_nodes'],
                ops=rep['ops'], ort_graph_optimizations=opt,
                session_create_ms=(time.perf_counter() - start) * 1e3)
            runners.append(Runner(key, lambda s=sess, x=inputs: s.run(
                None, {s.get_inputs()[0].name: x})))
    time_interleaved(runners, 2, runs, torch.device('cpu'))
    by_name = {r.name: r for r in runners}
    for r in runners:
        report['results'][r.name].update(summary(r, batch))
    for suffix in ('', ' (ORT opt off)'):
        report[f'speedup_folded{suffix}'] = paired_ratio(
            by_name['unfolded' + suffix].times,
            by_name['folded' + suffix].times)
    tmp.cleanup()
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', help="checkpoint ('none': random)")
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--runs', type=int, default=10)
    parser.add_argument('--threads', type=int, default=1,
                        help='onnxruntime intra-op threads (default 1)')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--json', help='write the report here')
    args = parser.parse_args(argv)
    report = benchmark(args.config, args.checkpoint, args.shape, args.batch,
                       args.runs, args.threads, args.opset)
    print(markdown_table(
        ('graph', 'nodes', 'median ms', 'session creation ms'),
        [(k, r['num_nodes'], r.get('ms_per_step', r.get('error')),
          r['session_create_ms']) for k, r in report['results'].items()]))
    print(f"speed-up of folding (paired): {report['speedup_folded']:.2f}x, "
          f"{report['speedup_folded (ORT opt off)']:.2f}x with ORT opt off")
    write_json(args.json, report)
    return 0


if __name__ == '__main__':
    sys.exit(main())

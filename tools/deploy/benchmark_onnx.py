"""onnxruntime latency of an nfnet_mm classifier, WS folded vs not folded.

Exports the config's model twice with ``tools/deploy/export_onnx.py`` (with
``backbone.switch_to_deploy()`` and without), checks both against PyTorch and
times ``InferenceSession.run`` on CPU, interleaving the graphs, each with
onnxruntime's graph optimisations on (the default; they constant-fold the
standardisation of an unfolded graph at load time) and off (the graph as
exported). Also reports the session creation time. Prints and optionally
writes a JSON report.

Usage::

    python tools/deploy/benchmark_onnx.py CONFIG CHECKPOINT \\
        [--shape H W] [--batch B] [--runs N] [--threads T] [--json FILE]
"""
import argparse
import json
import os.path as osp
import platform
import statistics
import sys
import tempfile
import time
from typing import Optional, Sequence

import numpy as np


def _load_export_tool():
    # by path: this folder also holds mmdeploy.py, which must not shadow the
    # mmdeploy package on sys.path
    import importlib.util
    name = 'nfnet_export_onnx'
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, osp.join(osp.dirname(osp.abspath(__file__)),
                           'export_onnx.py'))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


export_onnx = _load_export_tool()

__all__ = ['benchmark', 'main']


def benchmark(config: str,
              checkpoint: Optional[str],
              shape: Optional[Sequence[int]] = None,
              batch: int = 1,
              runs: int = 10,
              threads: Optional[int] = 1,
              opset: int = 17,
              workdir: Optional[str] = None) -> dict:
    """Export folded and unfolded graphs and time them with onnxruntime.

    Returns:
        dict: Per variant (``folded``, ``unfolded``, and both with
        ``_ort_opt_off``): median/min ms per run, session creation ms, node
        count, op histogram, max abs difference to PyTorch; plus the
        speed-ups ``unfolded_median / folded_median``.
    """
    import onnxruntime
    import torch
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    workdir = workdir or tmp.name
    report = dict(config=config, checkpoint=checkpoint, batch=batch,
                  runs=runs, threads=threads, opset=opset,
                  onnxruntime=onnxruntime.__version__,
                  torch=torch.__version__, cpu=platform.processor() or
                  platform.machine())
    sessions = {}
    for name, fold in (('folded', True), ('unfolded', False)):
        out = osp.join(workdir, f'{name}.onnx')
        rep = export_onnx.run(config, checkpoint, out, fold=fold,
                              opset=opset, shape=shape,
                              dynamic_batch=batch > 1, threads=threads)
        report[name] = dict(max_abs_diff=rep['max_abs_diff'],
                            num_nodes=rep['num_nodes'], ops=rep['ops'])
        report['input_shape'] = [batch] + rep['input_shape'][1:]
        for opt in (True, False):
            key = f'{name}' + ('' if opt else '_ort_opt_off')
            start = time.perf_counter()
            sessions[key] = export_onnx.ort_session(out, threads, opt)
            create_ms = (time.perf_counter() - start) * 1e3
            report.setdefault(key, dict(report[name]))
            report[key]['session_create_ms'] = create_ms
            report[key]['ort_graph_optimizations'] = opt
    inputs = np.random.default_rng(0).standard_normal(
        report['input_shape']).astype(np.float32)
    times = {name: [] for name in sessions}
    for name, sess in sessions.items():  # warm-up
        for _ in range(2):
            sess.run(None, {'input': inputs})
    for _ in range(runs):  # interleaved
        for name, sess in sessions.items():
            start = time.perf_counter()
            sess.run(None, {'input': inputs})
            times[name].append((time.perf_counter() - start) * 1e3)
    for name, ts in times.items():
        report[name].update(median_ms=statistics.median(ts), min_ms=min(ts))
    report['speedup_folded'] = (report['unfolded']['median_ms'] /
                                report['folded']['median_ms'])
    report['speedup_folded_ort_opt_off'] = (
        report['unfolded_ort_opt_off']['median_ms'] /
        report['folded_ort_opt_off']['median_ms'])
    if tmp is not None:
        tmp.cleanup()
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
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
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, 'w') as f:
            f.write(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())

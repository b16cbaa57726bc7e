"""Benchmarks of nfnet_mm: one harness, the measurements built on it.

Not imported by ``import nfnet_mm`` (it needs timm). The command lines are
``tools/analysis_tools/benchmark*.py``, ``lab/benchmark_onnx.py`` and
``lab/gpu_report.sh``; docs/benchmarks.md has the numbers.

- :mod:`.harness`: interleaved timer (warm-up, rotating order, wall and CPU
  time, CUDA peak memory), paired ratios, machine info, model builders (ours
  and timm's ``dm_nfnet_*``), MFU, markdown tables, JSON.
- :mod:`.measures`: ours vs timm (training, AGC share, SAM cost, inference,
  folded inference), the AGC kernel against timm's loop, WS folding.
- :mod:`.report`: the markdown report of ``gpu_report.sh``, with the targets.
"""

"""The lab: benchmarks and reproduction experiments built on nfnet_mm.

Not part of the wheel (``setup.py`` packages ``nfnet_mm`` only). The lab
imports the product, never the reverse. Run its command lines from the
repository root, e.g. ``python -m lab.benchmark f0 --device cpu``.
"""

"""Convert DeepMind's released NFNet weights (Haiku) to an nfnet_mm checkpoint.

Usage::

    python tools/model_converters/deepmind_to_mmpretrain.py \\
        F0_haiku.npz nfnet-f0_3rdparty_in1k.pth [--arch f0 | --depths D ...]

The file is read without running code from it; any module left over or
missing stops it with one error and writes nothing (exit status 1). See
:mod:`nfnet_mm.converters.deepmind`.
"""
import argparse
import sys

from nfnet_mm.converters.common import run_converter
from nfnet_mm.converters.deepmind import convert_deepmind_file

if __name__ == '__main__':
    parser = argparse.ArgumentParser(
        description='Convert DeepMind NFNet (Haiku) weights to nfnet_mm.')
    parser.add_argument('src', help='DeepMind file, e.g. F0_haiku.npz')
    parser.add_argument('dst', help='output checkpoint (.pth)')
    parser.add_argument(
        '--arch',
        help='NFNet arch name (f0..f7, f4+); '
        'inferred from the number of blocks when omitted')
    parser.add_argument(
        '--depths',
        type=int,
        nargs='+',
        help='blocks per stage, for an unnamed arch')
    args = parser.parse_args()
    sys.exit(
        run_converter(
            lambda: convert_deepmind_file(args.src, args.dst, args.arch, args.
                                          depths), args.dst))

"""Convert a timm ``dm_nfnet_f*`` checkpoint to an MMPretrain checkpoint.

Usage::

    python tools/model_converters/timm_to_mmpretrain.py SRC DST [--arch f0]

``SRC``: a timm state dict (``.pth``/``.pt``/``.bin``, optionally under
``'state_dict'``/``'model'``, or ``.safetensors``). Any key left over or
missing stops it with one error and writes nothing (exit status 1). See
:mod:`nfnet_mm.converters.timm`.
"""
import argparse
import sys

from nfnet_mm.converters.common import run_converter
from nfnet_mm.converters.timm import convert_timm_file

if __name__ == '__main__':
    parser = argparse.ArgumentParser(
        description='Convert a timm dm_nfnet_f* checkpoint to MMPretrain.')
    parser.add_argument('src', help='timm checkpoint (.pth or .safetensors)')
    parser.add_argument('dst', help='output MMPretrain checkpoint (.pth)')
    parser.add_argument(
        '--arch', help='NFNet arch name (default: read from '
        'the tensors)')
    args = parser.parse_args()
    sys.exit(
        run_converter(lambda: convert_timm_file(args.src, args.dst, args.arch),
                      args.dst))

"""Convert a timm NF checkpoint to an MMPretrain checkpoint.

Usage::

    python tools/model_converters/timm_to_mmpretrain.py SRC DST --model NAME
    python tools/model_converters/timm_to_mmpretrain.py SRC DST [--arch f0]

``--model``: any of timm's 35 NF names (``eca_nfnet_l0``, ``nf_resnet50``,
...); the result loads into ``nfnet_mm.converters.timm_model_cfg(NAME)``
with timm's numerics. Without it, ``dm_nfnet_f*`` weights go to the
F-series config (DeepMind's numerics).

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
        description='Convert a timm NF checkpoint to MMPretrain.')
    parser.add_argument('src', help='timm checkpoint (.pth or .safetensors)')
    parser.add_argument('dst', help='output MMPretrain checkpoint (.pth)')
    parser.add_argument(
        '--arch', help='NFNet arch name (default: read from '
        'the tensors)')
    parser.add_argument('--model', help="timm's model name, e.g. eca_nfnet_l0")
    args = parser.parse_args()
    sys.exit(
        run_converter(
            lambda: convert_timm_file(args.src, args.dst, args.arch, args.model
                                      ), args.dst))

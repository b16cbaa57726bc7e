"""Convert a timm ``dm_nfnet_f*`` checkpoint to an MMPretrain checkpoint.

Usage::

    python tools/model_converters/timm_to_mmpretrain.py SRC DST

``SRC`` is a timm state dict (``.pth``/``.pt``/``.bin``, optionally wrapped
in a dict under ``'state_dict'`` or ``'model'``, or ``.safetensors``).
``DST`` gets ``{'state_dict': ..., 'meta': ...}`` whose keys (``backbone.*``,
``head.fc.*``) load with ``strict=True`` into an ``ImageClassifier`` with an
``NFNet`` backbone (``padding='same'``), a ``GlobalAveragePooling`` neck and
an ``NFNetClsHead``.

Numerics: timm's dm_nfnet uses the exact (erf) GELU and computes the weight
standardisation as ``(W - mean) / sqrt(fan_in * (var + 1e-5))`` while our
default is DeepMind's ``rsqrt(max(fan_in * var, 1e-4))`` with the tanh GELU;
the outputs differ slightly. Use ``act_cfg=dict(type='GELU',
approximate='none')`` to reproduce timm more closely.
"""
import argparse
import os.path as osp
import re
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Tuple

import torch

__all__ = [
    'TIMM_KEY_RULES', 'conv_gain_to_vector', 'conv1x1_to_linear',
    'convert_timm_state_dict', 'infer_nfnet_arch', 'load_state_dict',
    'main'
]


def conv_gain_to_vector(t: torch.Tensor) -> torch.Tensor:
    """timm's conv gain ``[O, 1, 1, 1]`` -> our ``[O]``."""
    if t.dim() == 4 and t.shape[1:] != (1, 1, 1):
        raise ValueError(f'Expected a gain of shape [O, 1, 1, 1], got '
                         f'{tuple(t.shape)}')
    return t.reshape(-1)


def conv1x1_to_linear(t: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv weight ``[O, I, 1, 1]`` -> an ``nn.Linear`` weight."""
    if t.dim() == 4:
        if t.shape[2:] != (1, 1):
            raise ValueError(f'Expected a 1x1 conv weight, got '
                             f'{tuple(t.shape)}')
        return t.reshape(t.shape[0], t.shape[1])
    return t


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


_CONV = r'(?P<p>(?:stem\.conv[1-4]|final_conv|stages\.\d+\.\d+\.' \
    r'(?:conv1|conv2|conv2b|conv3|downsample\.conv)))'
_BLOCK = r'(?P<b>stages\.\d+\.\d+)'

# (source regex, target template, tensor transform), first match wins.
TIMM_KEY_RULES: List[Tuple[str, str, Callable]] = [
    (_CONV + r'\.weight', 'backbone.{p}.weight', _same),
    (_CONV + r'\.bias', 'backbone.{p}.bias', _same),
    (_CONV + r'\.gain', 'backbone.{p}.gain', conv_gain_to_vector),
    (_BLOCK + r'\.skipinit_gain', 'backbone.{b}.skip_gain',
     lambda t: t.reshape(())),
    (_BLOCK + r'\.attn_last\.(?P<fc>fc[12])\.weight',
     'backbone.{b}.se.{fc}.weight', conv1x1_to_linear),
    (_BLOCK + r'\.attn_last\.(?P<fc>fc[12])\.bias',
     'backbone.{b}.se.{fc}.bias', _same),
    (r'head\.fc\.(?P<n>weight|bias)', 'head.fc.{n}', _same),
]


def _target_key(key: str) -> Optional[Tuple[str, Callable]]:
    for pattern, template, fn in TIMM_KEY_RULES:
        match = re.fullmatch(pattern, key)
        if match:
            groups = match.groupdict()
            target = template.format(**groups)
            target = target.replace('.downsample.conv', '.shortcut.conv')
            return target, fn
    return None


def convert_timm_state_dict(
        state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Map a timm ``dm_nfnet_f*`` state dict to our ImageClassifier keys.

    Every source key must be used exactly once.

    Args:
        state_dict (dict[str, Tensor]): timm's state dict.

    Returns:
        OrderedDict[str, Tensor]: ``backbone.*`` and ``head.fc.*`` tensors.

    Raises:
        KeyError: Listing the source keys that no rule maps, or target keys
            produced twice.
    """
    converted = OrderedDict()
    leftovers = []
    for key, value in state_dict.items():
        mapped = _target_key(key)
        if mapped is None:
            leftovers.append(key)
            continue
        target, fn = mapped
        if target in converted:
            raise KeyError(f'Two source keys map to {target!r}')
        converted[target] = fn(value).contiguous()
    if leftovers:
        raise KeyError(
            f'{len(leftovers)} source key(s) not used by the conversion: '
            f'{leftovers}')
    return converted


def infer_nfnet_arch(state_dict: Dict[str, torch.Tensor]) -> Optional[str]:
    """Guess the F-variant name from a converted state dict (None if none)."""
    depths = [0, 0, 0, 0]
    for key in state_dict:
        m = re.match(r'backbone\.stages\.(\d+)\.(\d+)\.skip_gain$', key)
        if m and int(m.group(1)) < 4:
            s, b = int(m.group(1)), int(m.group(2))
            depths[s] = max(depths[s], b + 1)
    n = depths[0]
    if n == 0 or depths != [n, 2 * n, 6 * n, 3 * n]:
        return None
    width = state_dict.get('backbone.stages.0.0.conv3.weight')
    if width is not None and width.shape[0] == 384:
        return 'f4+' if n == 5 else None
    return f'f{n - 1}'


def load_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Read a timm state dict from ``.safetensors`` or a torch file."""
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path, device='cpu')
    obj = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(obj, dict):
        for key in ('state_dict', 'model', 'state_dict_ema'):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
    return obj


def parse_args():
    parser = argparse.ArgumentParser(
        description='Convert a timm dm_nfnet_f* checkpoint to MMPretrain.')
    parser.add_argument('src', help='timm checkpoint (.pth or .safetensors)')
    parser.add_argument('dst', help='output MMPretrain checkpoint (.pth)')
    return parser.parse_args()


def main():
    args = parse_args()
    converted = convert_timm_state_dict(load_state_dict(args.src))
    arch = infer_nfnet_arch(converted)
    meta = dict(
        converted_from='timm',
        source=osp.basename(args.src),
        arch=arch,
        padding='same',
        note='timm numerics: exact GELU, WS eps 1e-5 inside the variance')
    torch.save(dict(state_dict=converted, meta=meta), args.dst)
    print(f'Converted {len(converted)} tensors (arch {arch}) to {args.dst}')


if __name__ == '__main__':
    main()

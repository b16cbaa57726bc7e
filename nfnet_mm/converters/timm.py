"""timm ``dm_nfnet_f*`` weights -> an ImageClassifier (``padding='same'``).

timm's numerics differ: exact GELU, WS eps 1e-5 inside the variance."""
import os.path as osp
import re
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch

from ..utils.checkpoint import atomic_save
from .common import (ConversionError, check_converted, infer_arch,
                     unreadable_error)

__all__ = [
    'TIMM_KEY_RULES', 'convert_timm_state_dict', 'load_timm_file',
    'convert_timm_file'
]

_CONV = (r'(?P<p>(?:stem\.conv\d|final_conv|stages\.\d+\.\d+\.'
         r'(?:conv1|conv2|conv2b|conv3|downsample\.conv)))')
_BLOCK = r'(?P<b>stages\.\d+\.\d+)'


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


# (source regex, target template, tensor transform), first match wins
TIMM_KEY_RULES: List[Tuple[str, str, Callable]] = [
    (_CONV + r'\.(?P<n>weight|bias)', 'backbone.{p}.{n}', _same),
    # timm's gain is [O, 1, 1, 1], ours [O]
    (_CONV + r'\.gain', 'backbone.{p}.gain', lambda t: t.flatten()),
    (_BLOCK + r'\.skipinit_gain', 'backbone.{b}.skip_gain',
     lambda t: t.squeeze()),
    # timm's SE layers are 1x1 convs [O, I, 1, 1], ours nn.Linear [O, I]
    (_BLOCK + r'\.attn_last\.(?P<fc>fc[12])\.weight',
     'backbone.{b}.se.{fc}.weight', lambda t: t.flatten(1)),
    (_BLOCK + r'\.attn_last\.(?P<fc>fc[12])\.bias',
     'backbone.{b}.se.{fc}.bias', _same),
    (r'head\.fc\.(?P<n>weight|bias)', 'head.fc.{n}', _same),
]


def _timm_name(target: str) -> str:
    """Our key -> the timm key it comes from."""
    key = re.sub(r'^backbone\.', '', target)
    for ours, theirs in (('.shortcut.conv', '.downsample.conv'),
                         ('.skip_gain', '.skipinit_gain'), ('.se.fc',
                                                            '.attn_last.fc')):
        key = key.replace(ours, theirs)
    return key


def convert_timm_state_dict(
        state_dict: Dict[str, torch.Tensor],
        arch: Optional[Union[str, dict]] = None) -> 'OrderedDict':
    """Map a timm ``dm_nfnet_f*`` state dict to our ImageClassifier keys.

    Args:
        state_dict (dict): timm's state dict.
        arch (str | dict, optional): The arch to fill; None infers it.
    """
    converted, unused = OrderedDict(), []
    for key, value in state_dict.items():
        for pattern, template, fn in TIMM_KEY_RULES:
            match = re.fullmatch(pattern, key)
            if match:
                target = template.format(**match.groupdict()).replace(
                    '.downsample.conv', '.shortcut.conv')
                if target in converted:
                    raise ConversionError(f'Two source keys give {target}')
                converted[target] = fn(value).contiguous()
                break
        else:
            unused.append(key)
    check_converted(converted, arch or infer_arch(converted), unused,
                    _timm_name)
    return converted


def load_timm_file(path: str) -> Dict[str, torch.Tensor]:
    """timm's state dict from ``.safetensors`` or a weights-only torch file
    (maybe under ``'state_dict'``, ``'model'`` or ``'state_dict_ema'``)."""
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        try:
            return load_file(path, device='cpu')
        except Exception:  # noqa: BLE001 - safetensors' errors quote bytes
            raise ConversionError(
                f'{path} is not a readable .safetensors file.') from None
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # noqa: BLE001 - classified by the helper
        raise unreadable_error(path, err, 'a PyTorch checkpoint') from None
    if isinstance(obj, dict):
        for key in ('state_dict', 'model', 'state_dict_ema'):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(f'{path} holds no state dict of tensors.')
    return obj


def convert_timm_file(src: str, dst: str, arch: Optional[str] = None) -> dict:
    """Read ``src``, convert, check, then (only then) write ``dst``."""
    arch = arch and arch.lower()
    converted = convert_timm_state_dict(load_timm_file(src), arch)
    meta = dict(
        converted_from='timm',
        source=osp.basename(src),
        arch=arch or infer_arch(converted),
        padding='same',
        note='timm numerics: exact GELU, WS eps 1e-5 inside the variance')
    checkpoint = dict(state_dict=converted, meta=meta)
    atomic_save(checkpoint, dst)
    return checkpoint

"""timm's NF weights (all 35 models) -> an ImageClassifier.

With ``model`` (a timm name) the backbone is built with timm's numerics and
reproduces its logits; without it, ``dm_nfnet_f*`` weights go to the
F-series with DeepMind's numerics (``padding='same'``; timm's exact GELU
and WS eps inside the variance differ slightly)."""
import copy
import os.path as osp
import re
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch

from ..utils.checkpoint import atomic_save
from .common import (ConversionError, check_converted, infer_arch,
                     unreadable_error)

__all__ = [
    'TIMM_KEY_RULES', 'TIMM_MODELS', 'timm_model_cfg',
    'convert_timm_state_dict', 'load_timm_file', 'convert_timm_file'
]

# timm's name -> our backbone config, with timm's numerics
TIMM_MODELS: Dict[str, dict] = {
    **{
        f'dm_nfnet_f{n}':
        dict(
            type='NFNet',
            arch=f'f{n}',
            act_cfg=dict(type='GELU'),
            ws_style='timm')
        for n in range(7)
    },
    **{
        f'nfnet_f{n}': dict(type='NFNet', arch=f'timm-f{n}')
        for n in range(8)
    },
    'nfnet_l0': dict(type='NFNet', arch='l0'),
    **{
        f'eca_nfnet_l{n}': dict(type='NFNet', arch=f'eca-l{n}')
        for n in range(4)
    },
    **{
        f'nf_regnet_b{n}': dict(type='NFRegNet', arch=f'b{n}')
        for n in range(6)
    },
    **{
        f'nf_{a or ""}resnet{d}': dict(type='NFResNet', depth=d, attention=a)
        for d in (26, 50, 101)
        for a in (None, 'se', 'eca')
    },
}


def timm_model_cfg(name: str, num_classes: int = 1000) -> dict:
    """The ImageClassifier config of timm's model ``name`` (RGB input, timm's
    ImageNet mean/std); it loads converted weights with ``strict=True``."""
    from mmpretrain.registry import MODELS
    if name not in TIMM_MODELS:
        raise ValueError(f'Unknown timm NF model {name!r}; known: '
                         f'{sorted(TIMM_MODELS)}.')
    backbone = copy.deepcopy(TIMM_MODELS[name])
    with torch.device('meta'):
        width = MODELS.build(backbone).num_features
    return dict(
        type='ImageClassifier',
        data_preprocessor=dict(
            num_classes=num_classes,
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            to_rgb=True),
        backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='NFNetClsHead', num_classes=num_classes, in_channels=width))


_CONV = (r'(?P<p>(?:stem\.conv\d?|final_conv|stages\.\d+\.\d+\.'
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
    # timm's SE layers are 1x1 convs [O, I, 1, 1], ours nn.Linear [O, I];
    # NF-RegNet's SE (inside the bottleneck) is timm's ``attn``
    (_BLOCK + r'\.attn(?:_last)?\.(?P<fc>fc[12])\.weight',
     'backbone.{b}.se.{fc}.weight', lambda t: t.flatten(1)),
    (_BLOCK + r'\.attn(?:_last)?\.(?P<fc>fc[12])\.bias',
     'backbone.{b}.se.{fc}.bias', _same),
    (_BLOCK + r'\.attn_last\.conv\.weight', 'backbone.{b}.eca.conv.weight',
     _same),
    (r'head\.fc\.(?P<n>weight|bias)', 'head.fc.{n}', _same),
]


def _timm_name(target: str, name: Optional[str] = None) -> str:
    """Our key -> the timm key it comes from (of timm's model ``name``)."""
    key = re.sub(r'^backbone\.', '', target)
    kind = TIMM_MODELS[name]['type'] if name else 'NFNet'
    attn = '.attn.fc' if kind == 'NFRegNet' else '.attn_last.fc'
    for ours, theirs in (('.shortcut.conv', '.downsample.conv'),
                         ('.skip_gain', '.skipinit_gain'), ('.se.fc', attn),
                         ('.eca.', '.attn_last.')):
        key = key.replace(ours, theirs)
    if kind != 'NFNet':  # one stem conv
        key = key.replace('stem.conv1.', 'stem.conv.')
    return key


def convert_timm_state_dict(state_dict: Dict[str, torch.Tensor],
                            arch: Optional[Union[str, dict]] = None,
                            model: Optional[str] = None) -> 'OrderedDict':
    """Map a timm state dict to our ImageClassifier keys.

    Args:
        state_dict (dict): timm's state dict.
        arch (str | dict, optional): The F-series arch to fill (without
            ``model``); None infers it.
        model (str, optional): timm's model name (:data:`TIMM_MODELS`): fill
            :func:`timm_model_cfg`'s backbone instead.
    """
    if model is not None and model not in TIMM_MODELS:
        raise ConversionError(f'Unknown timm NF model {model!r}; known: '
                              f'{sorted(TIMM_MODELS)}.')
    converted, unused = OrderedDict(), []
    for key, value in state_dict.items():
        for pattern, template, fn in TIMM_KEY_RULES:
            match = re.fullmatch(pattern, key)
            if match:
                target = template.format(**match.groupdict()).replace(
                    '.downsample.conv',
                    '.shortcut.conv').replace('stem.conv.', 'stem.conv1.')
                if target in converted:
                    raise ConversionError(f'Two source keys give {target}')
                converted[target] = fn(value).contiguous()
                break
        else:
            unused.append(key)
    if model is not None:
        check_converted(converted, TIMM_MODELS[model], unused,
                        lambda k: _timm_name(k, model))
    else:
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


def convert_timm_file(src: str,
                      dst: str,
                      arch: Optional[str] = None,
                      model: Optional[str] = None) -> dict:
    """Read ``src``, convert, check, then (only then) write ``dst``."""
    arch = arch and arch.lower()
    if arch and model:
        raise ConversionError('Give --arch or --model, not both.')
    converted = convert_timm_state_dict(load_timm_file(src), arch, model)
    if model:
        meta = dict(
            converted_from='timm',
            source=osp.basename(src),
            timm_model=model,
            arch=TIMM_MODELS[model].get('arch', model),
            note='load with nfnet_mm.converters.timm_model_cfg(timm_model)')
    else:
        meta = dict(
            converted_from='timm',
            source=osp.basename(src),
            arch=arch or infer_arch(converted),
            padding='same',
            note='timm numerics: exact GELU, WS eps 1e-5 in the variance')
    checkpoint = dict(state_dict=converted, meta=meta)
    atomic_save(checkpoint, dst)
    return checkpoint

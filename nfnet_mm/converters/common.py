"""What both weight converters share: the error type, the arch read from the
tensors and the exact check against ``NFNet(arch)`` on the ``meta`` device."""
import re
import sys
from typing import Callable, Dict, Iterable, Union

import torch

from ..utils.checkpoint import describe_unreadable, forbidden_globals

__all__ = [
    'ConversionError', 'unreadable_error', 'infer_arch', 'check_converted',
    'run_converter'
]


class ConversionError(ValueError):
    """The source cannot be converted completely and exactly."""


def unreadable_error(path: str, err: BaseException,
                     expected: str) -> ConversionError:
    """One error for an unreadable file: its forbidden objects, else what the
    file is; never its bytes."""
    names = forbidden_globals(err)
    if names:
        return ConversionError(
            f'{path} holds objects that {expected} may not hold: '
            f'{[ascii(n)[1:-1][:80] for n in names]}. Converters only read '
            'tensors, arrays and containers and never run code from a file.')
    return ConversionError(
        f'{path} {describe_unreadable(path)}, not {expected}.')


def _first(state_dict: Dict[str, torch.Tensor], pattern: str) -> torch.Size:
    for key, value in state_dict.items():
        if re.fullmatch(pattern, key):
            return value.shape
    raise ConversionError(
        f'Cannot infer the arch: no key matches {pattern!r}; name it with '
        '--arch.')


def _ratio(num: int, den: int) -> float:
    # the model rounds den * ratio down (int()): keep it off the edge
    ratio = num / den
    return ratio if int(den * ratio) == num else (num + 1e-6) / den


def infer_arch(state_dict: Dict[str, torch.Tensor]) -> Union[str, dict]:
    """The NFNet arch of ``backbone.*`` weights: a name of ``arch_settings``
    if depths and widths match one, else a dict read from the shapes (F0's
    ``alpha`` and strides; a shortcut that keeps the width means stride 2)."""
    from ..models.backbones.nfnet import NFNet
    blocks = [
        tuple(map(int, m.groups()))
        for m in (re.match(r'backbone\.stages\.(\d+)\.(\d+)\.', k)
                  for k in state_dict) if m
    ]
    if not blocks:
        raise ConversionError('Cannot infer the arch: no backbone.stages.* '
                              'key; name it with --arch.')
    num_stages = max(s for s, _ in blocks) + 1
    depths = [
        max([b + 1 for s2, b in blocks if s2 == s], default=0)
        for s in range(num_stages)
    ]
    stem, s = [], 1
    while any(k.startswith(f'backbone.stem.conv{s}.') for k in state_dict):
        stem.append(_first(state_dict, rf'backbone\.stem\.conv{s}\.weight')[0])
        s += 1
    stage = r'backbone\.stages\.{}\.\d+\.{}\.weight'
    widths = [
        _first(state_dict, stage.format(s, 'conv3'))[0]
        for s in range(num_stages)
    ]
    f_arch = NFNet.arch_settings['f0']
    for name, arch in NFNet.arch_settings.items():
        if arch['style'] == 'deepmind' and (arch['depths'], arch['widths'],
                                            arch['stem_widths']) == (depths,
                                                                     widths,
                                                                     stem):
            return name
    conv1 = _first(state_dict, stage.format(0, 'conv1'))
    fc1 = _first(state_dict, stage.format(0, 'se.fc1'))
    in_ch, strides = stem[-1], []
    for s, width in enumerate(widths):
        has_shortcut = any(
            k.startswith(f'backbone.stages.{s}.0.shortcut.')
            for k in state_dict)
        strides.append(2 if has_shortcut and in_ch == width else
                       f_arch['strides'][s] if has_shortcut else 1)
        in_ch = width
    final = _first(state_dict, r'backbone\.final_conv\.weight')[0]
    return dict(
        depths=depths,
        widths=widths,
        stem_widths=stem,
        group_width=_first(state_dict, stage.format(0, 'conv2'))[1],
        bottleneck_ratio=_ratio(conv1[0], widths[0]),
        se_ratio=_ratio(fc1[0], widths[0]),
        final_expansion=_ratio(final, widths[-1]),
        alpha=f_arch['alpha'],
        strides=strides,
        stem_strides=(f_arch['stem_strides'] if len(stem) == 4 else [1] *
                      len(stem)))


def check_converted(state_dict: Dict[str, torch.Tensor],
                    arch: Union[str, dict],
                    unused: Iterable[str] = (),
                    source_name: Callable[[str], str] = str) -> None:
    """Refuse weights that do not fill ``NFNet(arch)`` (or the backbone of
    a config with a ``type``) and the head exactly.

    Args:
        unused (Iterable[str]): Source keys no rule converted.
        source_name (Callable): A target key's name in the source.
    """
    from mmpretrain.registry import MODELS

    from ..models.backbones.nfnet import NFNet
    cfg = arch if isinstance(arch, dict) and 'type' in arch else dict(
        type=NFNet, arch=arch)
    try:
        with torch.device('meta'):
            backbone = MODELS.build(cfg)
    except (ValueError, TypeError) as err:  # an unknown arch name or key
        raise ConversionError(str(err)) from None
    expected = {
        f'backbone.{k}': tuple(v.shape)
        for k, v in backbone.state_dict().items()
    }
    head = state_dict.get('head.fc.weight', state_dict.get('head.fc.bias'))
    num_classes = 1000 if head is None else head.shape[0]
    expected['head.fc.weight'] = (num_classes, backbone.num_features)
    expected['head.fc.bias'] = (num_classes, )
    got = {k: tuple(v.shape) for k, v in state_dict.items()}
    problems = {
        'source keys no rule converts':
        sorted(unused),
        'missing in the source':
        [source_name(k) for k in expected if k not in got],
        'not in the model':
        sorted(set(got) - set(expected)),
        'shape mismatches (file vs model)': [
            f'{k}: {got[k]} vs {v}' for k, v in expected.items()
            if k in got and got[k] != v
        ],
    }
    found = {k: v for k, v in problems.items() if v}
    if found:
        name = f'NFNet({arch})' if isinstance(arch, str) else (
            cfg['type'] if 'type' in arch else 'NFNet(the inferred arch)')
        raise ConversionError(
            f'The weights do not fill {name} exactly; nothing was '
            'written. ' + '; '.join(f'{what} ({len(keys)}): {keys}'
                                    for what, keys in found.items()))


def run_converter(convert: Callable[[], dict], dst: str) -> int:
    """Run ``convert`` for a CLI: print one line, or the error and return 1."""
    try:
        ckpt = convert()
    except (ConversionError, FileNotFoundError) as err:
        print(f'ERROR: {err}', file=sys.stderr)
        return 1
    sd, meta = ckpt['state_dict'], ckpt['meta']
    arch = meta['arch'] if isinstance(meta['arch'], str) else (
        'custom; its meta has F0\'s alpha and strides, which no tensor shows')
    print(f'Converted {len(sd)} tensors '
          f'({sum(v.numel() for v in sd.values()):,} values, arch {arch}) '
          f'to {dst}')
    return 0

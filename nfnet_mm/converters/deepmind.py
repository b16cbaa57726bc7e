"""DeepMind's NFNet weights (Haiku, ``F{0..6}_haiku.npz``) -> our checkpoint.

Despite the suffix these are ``dill`` pickles of ``{module: {param: array}}``.
"""
import importlib
import io
import os.path as osp
import pickle
import re
import zipfile
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..utils.checkpoint import atomic_save
from .common import (ConversionError, check_converted, infer_arch,
                     unreadable_error)

__all__ = [
    'UnsafePickleError', 'SafeNumpyUnpickler', 'load_deepmind_file',
    'infer_depths', 'convert_deepmind_params', 'convert_deepmind_file'
]

Params = Dict[str, Dict[str, np.ndarray]]

SEP = '/~/'
_BLOCK = re.compile(r'nf_block(?:_(\d+))?')
# DeepMind's part of a block -> ours
_BLOCK_PARTS = {
    'conv0': 'conv1',
    'conv1': 'conv2',
    'conv1b': 'conv2b',
    'conv2': 'conv3',
    'conv_shortcut': 'shortcut.conv',
    f'squeeze_excite{SEP}linear': 'se.fc1',
    f'squeeze_excite{SEP}linear_1': 'se.fc2'
}
_PARAMS = dict(
    w='weight', b='bias', gain='gain', bias='bias', skip_gain='skip_gain')


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle refers to something other than containers and arrays."""

    def __init__(self, name: str) -> None:
        super().__init__(f'refusing to build {name}')
        self.names = [name]


def _numpy_attr(modules: Sequence[str], name: str) -> Callable:
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise UnsafePickleError(f'{modules[0]}.{name}')


def _encode_latin1(text: str, encoding: str = 'latin1') -> bytes:
    # protocol 2 writes bytes as _codecs.encode(str, 'latin1')
    if encoding not in ('latin1', 'latin-1'):
        raise UnsafePickleError(f'_codecs.encode(..., {encoding!r})')
    return text.encode('latin1')


def _dill_create_array(f: Callable,
                       args: tuple,
                       state: Any,
                       npdict: Optional[dict] = None) -> np.ndarray:
    # dill's ndarray pickle; ``f`` came through the allow-list (_reconstruct)
    if npdict:
        raise UnsafePickleError('an ndarray subclass with attributes')
    array = f(*args)
    array.__setstate__(state)
    return array


def _allowed_globals() -> Dict[Tuple[str, str], Callable]:
    mult = ('numpy._core.multiarray', 'numpy.core.multiarray')
    numeric = ('numpy._core.numeric', 'numpy.core.numeric')
    table = {
        ('numpy', 'ndarray'): np.ndarray,
        ('numpy', 'dtype'): np.dtype,
        ('collections', 'OrderedDict'): OrderedDict,
        ('_codecs', 'encode'): _encode_latin1,
        ('dill._dill', '_create_array'): _dill_create_array
    }
    for modules, names in ((mult, ('_reconstruct', 'scalar')),
                           (numeric, ('_frombuffer', ))):
        table.update({
            (module, name): _numpy_attr(modules, name)
            for module in modules
            for name in names
        })
    return table


class SafeNumpyUnpickler(pickle.Unpickler):
    """Unpickler allowing only NumPy's array, scalar and dtype builders,
    ``OrderedDict``, latin-1 ``_codecs.encode`` and dill's array wrapper."""

    _table: Optional[Dict[Tuple[str, str], Callable]] = None

    def find_class(self, module: str, name: str) -> Any:
        if SafeNumpyUnpickler._table is None:
            SafeNumpyUnpickler._table = _allowed_globals()
        if (module, name) not in self._table:
            raise UnsafePickleError(f'{module}.{name}')
        return self._table[(module, name)]

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError('a persistent id')


def load_deepmind_file(path: str) -> Params:
    """Read a DeepMind pickle (``*_haiku.npz``) or a real ``.npz`` safely as
    ``{module: {param: float array}}``."""
    with open(path, 'rb') as f:
        data = f.read()
    try:
        if data[:4] == b'PK\x03\x04' and zipfile.is_zipfile(io.BytesIO(data)):
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                tree = {key: npz[key] for key in npz.files}
        else:
            tree = SafeNumpyUnpickler(io.BytesIO(data)).load()
    except Exception as err:  # noqa: BLE001 - classified by the helper
        raise unreadable_error(path, err,
                               'a DeepMind parameter file') from None
    if not isinstance(tree, dict):
        raise ConversionError(f'{path} holds a {type(tree).__name__}, not a '
                              'dict of Haiku modules.')
    params: Params = {}
    for module, value in tree.items():
        group = value if isinstance(value, dict) else {None: value}
        for name, array in group.items():
            if name is None:  # flat tree: '<module>/<param>' -> array
                module, _, name = str(module).rpartition('/')
            if not isinstance(array,
                              (np.ndarray, np.generic)) or (not np.issubdtype(
                                  np.asarray(array).dtype, np.floating)):
                raise ConversionError(
                    f'{path}: {module}:{name} is a {type(array).__name__} '
                    f'({getattr(array, "dtype", "no dtype")}), not a float '
                    'array.')
            params.setdefault(str(module), {})[str(name)] = array
    return params


def _block_names(params: Params, root: str) -> Dict[int, str]:
    found = {}
    for module in params:
        parts = module.split(SEP)
        m = _BLOCK.fullmatch(parts[1]) if len(parts) > 1 else None
        if parts[0] == root and m:
            found[int(m.group(1) or 0)] = parts[1]
    return found


def infer_depths(params: Params, root: str = 'NFNet') -> Tuple[str, List[int]]:
    """The NFNet-F name and depths: ``12 n`` blocks mean ``[n, 2n, 6n, 3n]``,
    i.e. F(n-1), or F4+ if ``n = 5`` and the last width is 2048."""
    num_blocks = len(_block_names(params, root))
    if num_blocks == 0 or num_blocks % 12:
        raise ConversionError(
            f'Cannot infer the variant from {num_blocks} blocks (NFNet-F '
            'has 12 n); pass --arch NAME or --depths D1 D2 D3 D4.')
    n = num_blocks // 12
    last = params.get(f'{root}{SEP}nf_block_{num_blocks - 1}{SEP}conv2', {})
    width = np.shape(last.get('w', np.zeros(4)))[-1]
    return ('f4+' if (n == 5 and width == 2048) else f'f{n - 1}',
            [n, 2 * n, 6 * n, 3 * n])


def _tensor(name: str, array: Any) -> torch.Tensor:
    t = torch.from_numpy(np.array(array, dtype=np.float32, copy=True))
    if name == 'w' and t.dim() in (2, 4):  # HWIO -> OIHW, IO -> OI
        t = t.permute(3, 2, 0, 1) if t.dim() == 4 else t.T
    return t.contiguous()


def convert_deepmind_params(params: Params,
                            depths: Sequence[int],
                            arch: Optional[Any] = None,
                            root: str = 'NFNet') -> 'OrderedDict':
    """Map DeepMind's NFNet parameter tree onto nfnet_mm's keys.

    Args:
        params (dict): ``{module: {param: array}}`` as Haiku stores it.
        depths (Sequence[int]): Blocks per stage (to place block ``k``).
        arch (str | dict, optional): The arch to fill; None infers it.
        root (str): The network's Haiku name. Defaults to ``'NFNet'``.
    """
    positions = [(s, b) for s, d in enumerate(depths) for b in range(d)]
    blocks = _block_names(params, root)
    if sorted(blocks) != list(range(len(positions))):
        raise ConversionError(
            f'The file has blocks {sorted(blocks)} but depths {list(depths)} '
            f'need 0..{len(positions) - 1}.')
    out, unused = OrderedDict(), []
    for module, group in params.items():
        parts = module.split(SEP)
        tail, m = SEP.join(
            parts[2:]), _BLOCK.fullmatch(parts[1]) if len(parts) > 1 else None
        prefix = None
        if parts[0] != root or len(parts) < 2:
            pass
        elif m and (not tail or tail in _BLOCK_PARTS):
            s, b = positions[int(m.group(1) or 0)]
            prefix = f'backbone.stages.{s}.{b}' + (f'.{_BLOCK_PARTS[tail]}'
                                                   if tail else '')
        elif re.fullmatch(r'stem_conv\d+', parts[1]) and not tail:
            prefix = f'backbone.stem.conv{int(parts[1][9:]) + 1}'
        elif parts[1] in ('final_conv', 'linear') and not tail:
            prefix = dict(
                final_conv='backbone.final_conv', linear='head.fc')[parts[1]]
        for name, array in group.items():
            if prefix is None or name not in _PARAMS:
                unused.append(f'{module}:{name}')
            elif f'{prefix}.{_PARAMS[name]}' in out:
                # e.g. both 'b' and 'bias'
                raise ConversionError(
                    f'{module}:{name} and another array both '
                    f'give {prefix}.{_PARAMS[name]}')
            else:
                out[f'{prefix}.{_PARAMS[name]}'] = _tensor(name, array)

    def deepmind_name(key: str) -> str:
        *path, param = key.split('.')
        path = '.'.join(path)
        m = re.fullmatch(r'backbone\.stages\.(\d+)\.(\d+)(?:\.(.+))?', path)
        if m:
            k = positions.index((int(m[1]), int(m[2])))
            part = {v: p for p, v in _BLOCK_PARTS.items()}.get(m[3], m[3])
            module = (f'nf_block_{k}' if k else 'nf_block') + (f'{SEP}{part}'
                                                               if part else '')
        elif path.startswith('backbone.stem.conv'):
            module = f'stem_conv{int(path[18:]) - 1}'
        else:
            module = {'backbone.final_conv': 'final_conv'}.get(path, 'linear')
        linear = module.endswith(('linear', 'linear_1'))
        name = dict(
            weight='w', bias='b' if linear else 'bias').get(param, param)
        return f'{root}{SEP}{module}:{name}'

    check_converted(out, arch or infer_arch(out), unused, deepmind_name)
    return out


def convert_deepmind_file(src: str,
                          dst: str,
                          arch: Optional[str] = None,
                          depths: Optional[Sequence[int]] = None) -> dict:
    """Read ``src``, convert, check, then (only then) write ``dst``.

    Args:
        arch (str, optional): An arch name (e.g. ``'f0'``); None: inferred.
        depths (Sequence[int], optional): Blocks per stage, for unnamed archs.
    """
    from ..models.backbones.nfnet import NFNet
    params = load_deepmind_file(src)
    if arch is not None:
        valid = sorted(k for k, v in NFNet.arch_settings.items()
                       if v['style'] == 'deepmind')
        if arch.lower() not in valid:
            raise ConversionError(f'Unknown arch {arch!r}; valid: {valid}')
        arch = arch.lower()
        named = NFNet.arch_settings[arch]['depths']
        if depths is not None and list(depths) != named:
            raise ConversionError(f'--depths {list(depths)} contradict arch '
                                  f'{arch!r} (depths {named})')
        depths = named
    elif depths is None:
        arch, depths = infer_depths(params)
    state_dict = convert_deepmind_params(params, depths, arch)
    checkpoint = dict(
        meta=dict(
            source='deepmind-haiku',
            source_file=osp.basename(src),
            arch=arch or infer_arch(state_dict),
            depths=[int(d) for d in depths]),
        state_dict=state_dict)
    atomic_save(checkpoint, dst)
    return checkpoint

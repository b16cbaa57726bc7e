"""Convert DeepMind's released NFNet weights (Haiku) to an nfnet_mm checkpoint.

DeepMind publishes ``F{0..6}_haiku.npz`` (https://storage.googleapis.com/
dm-nfnets/). Despite the suffix these files are pickles (written with ``dill``)
of Haiku's two-level parameter dict ``{module_name: {param_name: array}}``:

- ``NFNet/~/stem_conv{0..3}`` -> ``backbone.stem.conv{1..4}``
- ``NFNet/~/nf_block[_k]`` (k counted over all blocks; the first is
  unnumbered), param ``skip_gain`` -> ``backbone.stages.S.B.skip_gain``
- ``.../~/conv0, conv1, conv1b, conv2`` -> ``...conv1, conv2, conv2b, conv3``
- ``.../~/conv_shortcut`` -> ``...shortcut.conv``
- ``.../~/squeeze_excite/~/linear, linear_1`` -> ``...se.fc1, se.fc2``
- ``NFNet/~/final_conv`` -> ``backbone.final_conv``
- ``NFNet/~/linear`` -> ``head.fc``

Convolutions store ``w`` as HWIO (``I = in / groups``) plus ``gain`` and
``bias`` of shape ``[O]``; they become ``weight`` OIHW, ``gain`` and ``bias``.
Linears store ``w`` as IO and ``b``; they become ``weight`` OI and ``bias``.

The file is read with an unpickler that only accepts plain containers and
NumPy arrays/scalars/dtypes: anything else (an object whose ``__reduce__``
would run code) is refused before it is built. A real NumPy ``.npz`` archive
with keys ``'<module>/<param>'`` is read with ``allow_pickle=False``.

Usage::

    python tools/model_converters/deepmind_to_mmpretrain.py \\
        F0_haiku.npz nfnet-f0_3rdparty_in1k.pth [--arch f0]
"""
import argparse
import importlib
import io
import os
import os.path as osp
import pickle
import re
import zipfile
from collections import OrderedDict
from typing import (IO, Any, Callable, Dict, List, Optional, Sequence, Tuple,
                    Union)

import numpy as np
import torch

__all__ = [
    'DeepMindCheckpointError', 'UnsafePickleError', 'SafeNumpyUnpickler',
    'load_deepmind_params', 'convert_deepmind_params', 'infer_arch',
    'check_state_dict', 'convert_file', 'main'
]

Params = Dict[str, Dict[str, np.ndarray]]

ROOT = 'NFNet'
SEP = '/~/'
# Haiku names the blocks nf_block, nf_block_1, nf_block_2, ... (flat index).
_BLOCK_RE = re.compile(r'^nf_block(?:_(\d+))?$')
_STEM_RE = re.compile(r'^stem_conv(\d+)$')
_BLOCK_CONVS = {
    'conv0': 'conv1',
    'conv1': 'conv2',
    'conv1b': 'conv2b',
    'conv2': 'conv3',
    'conv_shortcut': 'shortcut.conv',
}
_SE_LINEARS = {'linear': 'se.fc1', 'linear_1': 'se.fc2'}
_CONV_PARAMS = ('w', 'gain', 'bias')
_LINEAR_PARAMS = ('w', 'b')


class DeepMindCheckpointError(ValueError):
    """The parameter tree does not have DeepMind's NFNet layout."""


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle refers to something other than containers and arrays."""


# --------------------------------------------------------------------------
# Safe loading
# --------------------------------------------------------------------------
def _numpy_attr(modules: Sequence[str], name: str) -> Callable:
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise UnsafePickleError(f'NumPy has no {name} in {modules}')


def _encode_latin1(text: str, encoding: str = 'latin1') -> bytes:
    # Python 3 writes bytes as _codecs.encode(str, 'latin1') in protocol 2.
    if encoding not in ('latin1', 'latin-1'):
        raise UnsafePickleError(
            f'_codecs.encode with encoding {encoding!r} is not allowed')
    return text.encode('latin1')


def _dill_create_array(f: Callable, args: tuple, state: Any,
                       npdict: Optional[dict] = None) -> np.ndarray:
    # dill pickles ndarrays as _create_array(f, args, state, npdict); ``f``
    # was itself resolved through the allow-list (numpy's _reconstruct).
    array = f(*args)
    array.__setstate__(state)
    if npdict:
        raise UnsafePickleError(
            'refusing an ndarray carrying instance attributes '
            f'{sorted(npdict)}')
    return array


def _allowed_globals() -> Dict[Tuple[str, str], Callable]:
    mult = ('numpy._core.multiarray', 'numpy.core.multiarray')
    numeric = ('numpy._core.numeric', 'numpy.core.numeric')
    reconstruct = _numpy_attr(mult, '_reconstruct')
    scalar = _numpy_attr(mult, 'scalar')
    frombuffer = _numpy_attr(numeric, '_frombuffer')
    table = {
        ('numpy', 'ndarray'): np.ndarray,
        ('numpy', 'dtype'): np.dtype,
        ('collections', 'OrderedDict'): OrderedDict,
        ('_codecs', 'encode'): _encode_latin1,
        ('dill._dill', '_create_array'): _dill_create_array,
    }
    for module in mult:
        table[(module, '_reconstruct')] = reconstruct
        table[(module, 'scalar')] = scalar
    for module in numeric:
        table[(module, '_frombuffer')] = frombuffer
    return table


class SafeNumpyUnpickler(pickle.Unpickler):
    """Unpickler for parameter trees: containers and NumPy data only.

    Dicts, lists, tuples, strings and numbers need no global; the only
    globals resolved are NumPy's array/scalar/dtype reconstructors,
    ``collections.OrderedDict``, ``_codecs.encode`` (latin-1 only) and dill's
    array wrapper (re-implemented here, dill is not imported). Any other
    global raises :class:`UnsafePickleError` naming it, before anything is
    called.
    """

    _table: Optional[Dict[Tuple[str, str], Callable]] = None

    def find_class(self, module: str, name: str) -> Any:
        if SafeNumpyUnpickler._table is None:
            SafeNumpyUnpickler._table = _allowed_globals()
        try:
            return self._table[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f'Refusing to load {module}.{name}: the file may only hold '
                'dicts/lists/tuples of NumPy arrays (allowed globals: '
                f'{sorted(".".join(k) for k in self._table)}).') from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f'Refusing a persistent id {pid!r} (not a plain pickle).')


def _read_npz(fileobj: IO[bytes]) -> Params:
    params: Params = {}
    with np.load(fileobj, allow_pickle=False) as npz:
        for key in npz.files:
            module, sep, name = key.rpartition('/')
            if not sep:
                raise DeepMindCheckpointError(
                    f'.npz key {key!r} is not of the form "<module>/<param>"')
            params.setdefault(module, {})[name] = npz[key]
    return params


def load_deepmind_params(
        src: Union[str, os.PathLike, IO[bytes], bytes]) -> Params:
    """Read a DeepMind parameter file safely.

    Args:
        src (str | PathLike | file | bytes): A path, a binary file or the
            file's bytes: a pickle (DeepMind's ``*_haiku.npz``) or a real
            ``.npz`` archive.

    Returns:
        dict: ``{module_name: {param_name: np.ndarray}}``.

    Raises:
        UnsafePickleError: The pickle refers to a disallowed global.
        DeepMindCheckpointError: The content is not a parameter tree.
    """
    if isinstance(src, (str, os.PathLike)):
        with open(src, 'rb') as f:
            data = f.read()
    elif isinstance(src, bytes):
        data = src
    else:
        data = src.read()
    if data[:4] == b'PK\x03\x04' and zipfile.is_zipfile(io.BytesIO(data)):
        tree = _read_npz(io.BytesIO(data))
    else:
        tree = SafeNumpyUnpickler(io.BytesIO(data)).load()
    return _normalise_tree(tree)


def _normalise_tree(tree: Any) -> Params:
    if not isinstance(tree, dict):
        raise DeepMindCheckpointError(
            f'Expected a dict of Haiku modules, got {type(tree).__name__}')
    params: Params = {}
    for module, value in tree.items():
        if not isinstance(module, str):
            raise DeepMindCheckpointError(
                f'Module name {module!r} is not a string')
        if isinstance(value, dict):
            for name, array in value.items():
                params.setdefault(module, {})[str(name)] = array
        else:  # flat tree: '<module>/<param>' -> array
            mod, sep, name = module.rpartition('/')
            if not sep:
                raise DeepMindCheckpointError(
                    f'Entry {module!r} is neither a module dict nor a '
                    '"<module>/<param>" array')
            params.setdefault(mod, {})[name] = value
    for module, group in params.items():
        for name, array in group.items():
            if not isinstance(array, (np.ndarray, np.generic)):
                raise DeepMindCheckpointError(
                    f'{module}:{name} is a {type(array).__name__}, not an '
                    'array')
            if not np.issubdtype(np.asarray(array).dtype, np.floating):
                raise DeepMindCheckpointError(
                    f'{module}:{name} has dtype {np.asarray(array).dtype}; '
                    'parameters must be floating point')
    return params


# --------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------
def _block_positions(depths: Sequence[int]) -> List[Tuple[int, int]]:
    return [(s, b) for s, depth in enumerate(depths) for b in range(depth)]


def _tensor(array: Any) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32, copy=True))


def _conv(module: str, group: Dict[str, np.ndarray], prefix: str,
          out: Dict[str, torch.Tensor]) -> None:
    _check_param_names(module, group, _CONV_PARAMS)
    w = np.asarray(group['w'])
    if w.ndim != 4:
        raise DeepMindCheckpointError(
            f'{module}:w should be a 4-d HWIO conv kernel, got shape '
            f'{w.shape}')
    num_out = w.shape[3]
    for name in ('gain', 'bias'):
        if np.shape(group[name]) != (num_out, ):
            raise DeepMindCheckpointError(
                f'{module}:{name} has shape {np.shape(group[name])}, '
                f'expected ({num_out},)')
    out[f'{prefix}.weight'] = _tensor(w.transpose(3, 2, 0, 1))  # OIHW
    out[f'{prefix}.gain'] = _tensor(group['gain'])
    out[f'{prefix}.bias'] = _tensor(group['bias'])


def _linear(module: str, group: Dict[str, np.ndarray], prefix: str,
            out: Dict[str, torch.Tensor]) -> None:
    _check_param_names(module, group, _LINEAR_PARAMS)
    w = np.asarray(group['w'])
    if w.ndim != 2 or np.shape(group['b']) != (w.shape[1], ):
        raise DeepMindCheckpointError(
            f'{module}: expected w [in, out] and b [out], got '
            f'{w.shape} and {np.shape(group["b"])}')
    out[f'{prefix}.weight'] = _tensor(w.T)  # IO -> OI
    out[f'{prefix}.bias'] = _tensor(group['b'])


def _check_param_names(module: str, group: Dict[str, Any],
                       expected: Sequence[str]) -> None:
    unknown = sorted(set(group) - set(expected))
    missing = [name for name in expected if name not in group]
    if unknown or missing:
        raise DeepMindCheckpointError(
            f'Module {module!r}: unknown params {unknown}, missing params '
            f'{missing} (expected {list(expected)})')


def _split_module(module: str, root: str) -> List[str]:
    parts = module.split(SEP)
    if parts[0] != root or len(parts) < 2:
        raise DeepMindCheckpointError(
            f'Unknown module {module!r}: expected names under "{root}{SEP}"')
    return parts[1:]


def _count_blocks(params: Params, root: str = ROOT) -> int:
    indices = set()
    for module in params:
        parts = module.split(SEP)
        if len(parts) >= 2 and parts[0] == root:
            m = _BLOCK_RE.match(parts[1])
            if m:
                indices.add(int(m.group(1) or 0))
    if indices and indices != set(range(len(indices))):
        missing = sorted(set(range(max(indices) + 1)) - indices)
        raise DeepMindCheckpointError(
            f'Block numbering has gaps: missing '
            f'{["nf_block" + (f"_{i}" if i else "") for i in missing]}')
    return len(indices)


def infer_arch(params: Params, root: str = ROOT) -> Tuple[str, List[int]]:
    """Guess the NFNet-F variant from the number of blocks and widths.

    ``12 n`` blocks mean depths ``[n, 2n, 6n, 3n]``, i.e. F(n-1); a final
    width of 2048 with ``n = 5`` means F4+.

    Args:
        params (dict): The parameter tree.
        root (str): The network's Haiku name. Defaults to ``'NFNet'``.

    Returns:
        tuple[str, list[int]]: Arch name and depths.
    """
    num_blocks = _count_blocks(params, root)
    if num_blocks == 0 or num_blocks % 12:
        raise DeepMindCheckpointError(
            f'Cannot infer the variant from {num_blocks} blocks (NFNet-F '
            'has 12 n); pass --arch NAME or --depths D1 D2 D3 D4.')
    n = num_blocks // 12
    last = f'{root}{SEP}nf_block_{num_blocks - 1}{SEP}conv2'
    width = np.shape(params.get(last, {}).get('w', np.zeros(4)))[-1]
    name = 'f4+' if (n == 5 and width == 2048) else f'f{n - 1}'
    return name, [n, 2 * n, 6 * n, 3 * n]


def convert_deepmind_params(params: Params,
                            depths: Sequence[int],
                            root: str = ROOT,
                            with_head: bool = True) -> 'OrderedDict':
    """Map DeepMind's NFNet parameter tree onto nfnet_mm's state-dict keys.

    Every module and parameter is accounted for: an unknown module or
    parameter, a missing one, a block count that does not match ``depths``
    or a shortcut conv outside a stage's first block raises
    :class:`DeepMindCheckpointError` naming it.

    Args:
        params (dict): ``{module: {param: array}}`` as Haiku stores it.
        depths (Sequence[int]): Blocks per stage.
        root (str): The network's Haiku name. Defaults to ``'NFNet'``.
        with_head (bool): Expect the classifier ``linear`` (-> ``head.fc``).
            Defaults to True.

    Returns:
        OrderedDict: ``backbone.*`` (and ``head.fc.*``) float32 tensors.
    """
    positions = _block_positions(depths)
    num_blocks = _count_blocks(params, root)
    if num_blocks != len(positions):
        raise DeepMindCheckpointError(
            f'The file has {num_blocks} blocks but depths {list(depths)} '
            f'need {len(positions)}.')
    out: Dict[str, torch.Tensor] = {}
    seen_stem, seen_block_parts = set(), set()
    unknown: List[str] = []
    for module in sorted(params):
        group = params[module]
        parts = _split_module(module, root)
        head, rest = parts[0], parts[1:]
        stem = _STEM_RE.match(head)
        block = _BLOCK_RE.match(head)
        if stem and not rest:
            idx = int(stem.group(1))
            _conv(module, group, f'backbone.stem.conv{idx + 1}', out)
            seen_stem.add(idx)
        elif head == 'final_conv' and not rest:
            _conv(module, group, 'backbone.final_conv', out)
        elif head == 'linear' and not rest and with_head:
            _linear(module, group, 'head.fc', out)
        elif block:
            k = int(block.group(1) or 0)
            s, b = positions[k]
            prefix = f'backbone.stages.{s}.{b}'
            if not rest:
                _check_param_names(module, group, ('skip_gain', ))
                if np.ndim(group['skip_gain']) != 0:
                    raise DeepMindCheckpointError(
                        f'{module}:skip_gain should be a scalar, got shape '
                        f'{np.shape(group["skip_gain"])}')
                out[f'{prefix}.skip_gain'] = _tensor(group['skip_gain'])
                seen_block_parts.add((k, 'skip_gain'))
            elif len(rest) == 1 and rest[0] in _BLOCK_CONVS:
                if rest[0] == 'conv_shortcut' and b != 0:
                    raise DeepMindCheckpointError(
                        f'{module} is a shortcut conv in block {b} of stage '
                        f'{s}, but only a stage\'s first block has one: the '
                        f'depths {list(depths)} do not match the file.')
                _conv(module, group, f'{prefix}.{_BLOCK_CONVS[rest[0]]}',
                      out)
                seen_block_parts.add((k, rest[0]))
            elif (len(rest) == 2 and rest[0] == 'squeeze_excite'
                  and rest[1] in _SE_LINEARS):
                _linear(module, group, f'{prefix}.{_SE_LINEARS[rest[1]]}',
                        out)
                seen_block_parts.add((k, rest[1]))
            else:
                unknown.append(module)
        else:
            unknown.append(module)
    if unknown:
        raise DeepMindCheckpointError(
            f'Unknown modules {unknown}; expected stem_conv0..3, '
            'nf_block[_k]/~/{conv0,conv1,conv1b,conv2,conv_shortcut,'
            'squeeze_excite/~/linear[_1]}, final_conv'
            + (', linear' if with_head else '') + f' under "{root}{SEP}".')
    missing = []
    stem_count = max([4] + [i + 1 for i in seen_stem])
    missing += [
        f'{root}{SEP}stem_conv{i}' for i in range(stem_count)
        if i not in seen_stem
    ]
    required = ['skip_gain', 'conv0', 'conv1', 'conv1b', 'conv2', 'linear',
                'linear_1']
    for k in range(num_blocks):
        name = f'{root}{SEP}nf_block' + (f'_{k}' if k else '')
        for part in required:
            if (k, part) not in seen_block_parts:
                if part == 'skip_gain':
                    missing.append(f'{name}:skip_gain')
                elif part.startswith('linear'):
                    missing.append(f'{name}{SEP}squeeze_excite{SEP}{part}')
                else:
                    missing.append(f'{name}{SEP}{part}')
    if 'backbone.final_conv.weight' not in out:
        missing.append(f'{root}{SEP}final_conv')
    if with_head and 'head.fc.weight' not in out:
        missing.append(f'{root}{SEP}linear')
    if missing:
        raise DeepMindCheckpointError(f'Missing modules/params: {missing}')
    return OrderedDict(sorted(out.items(), key=lambda kv: _key_order(kv[0])))


def _key_order(key: str) -> tuple:
    return tuple((0, int(p)) if p.isdigit() else (1, p)
                 for p in key.split('.'))


def check_state_dict(state_dict: Dict[str, torch.Tensor],
                     arch: Union[str, dict],
                     num_classes: Optional[int] = None) -> None:
    """Compare converted keys and shapes with ``NFNet(arch)`` (+ head).

    The model is built on the ``meta`` device, so this is cheap even for
    F6. Raises :class:`DeepMindCheckpointError` listing missing, unexpected
    and mis-shaped keys.

    Args:
        state_dict (dict): Converted ``backbone.*``/``head.fc.*`` tensors.
        arch (str | dict): The NFNet arch.
        num_classes (int, optional): Classes of the head; taken from
            ``head.fc.bias`` when None. Defaults to None.
    """
    from nfnet_mm.models.backbones.nfnet import NFNet
    with torch.device('meta'):
        backbone = NFNet(arch=arch)
    expected = {
        f'backbone.{k}': tuple(v.shape)
        for k, v in backbone.state_dict().items()
    }
    if 'head.fc.bias' in state_dict:
        if num_classes is None:
            num_classes = state_dict['head.fc.bias'].shape[0]
        expected['head.fc.weight'] = (num_classes, backbone.num_features)
        expected['head.fc.bias'] = (num_classes, )
    got = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    mismatched = sorted(f'{k}: file {got[k]} vs model {expected[k]}'
                        for k in set(got) & set(expected)
                        if got[k] != expected[k])
    if missing or unexpected or mismatched:
        raise DeepMindCheckpointError(
            f'Converted weights do not fit NFNet(arch={arch!r}): missing '
            f'{missing}, unexpected {unexpected}, shape mismatches '
            f'{mismatched}')


def convert_file(src: Union[str, os.PathLike],
                 dst: Union[str, os.PathLike],
                 arch: Optional[str] = None,
                 depths: Optional[Sequence[int]] = None) -> dict:
    """Read ``src``, convert, check against the arch and save to ``dst``.

    Args:
        src (str | PathLike): DeepMind's file.
        dst (str | PathLike): Output ``.pth`` (``{'meta', 'state_dict'}``).
        arch (str, optional): NFNet arch name (e.g. ``'f0'``); inferred
            from the block count when both ``arch`` and ``depths`` are None.
        depths (Sequence[int], optional): Blocks per stage, for archs that
            are not named (the keys are then checked structurally only).

    Returns:
        dict: The saved checkpoint.
    """
    params = load_deepmind_params(src)
    if arch is None and depths is None:
        arch, depths = infer_arch(params)
    elif arch is not None:
        from nfnet_mm.models.backbones.nfnet import NFNet
        if arch.lower() not in NFNet.arch_settings:
            raise ValueError(f'Unknown arch {arch!r}; valid: '
                             f'{sorted(NFNet.arch_settings)}')
        arch = arch.lower()
        named = NFNet.arch_settings[arch]['depths']
        if depths is not None and list(depths) != list(named):
            raise ValueError(f'--depths {list(depths)} contradict arch '
                             f'{arch!r} (depths {named})')
        depths = named
    state_dict = convert_deepmind_params(params, depths)
    if arch is not None:
        check_state_dict(state_dict, arch)
    checkpoint = {
        'meta': {
            'source': 'deepmind-haiku',
            'source_file': osp.basename(str(src)),
            'arch': arch,
            'depths': [int(d) for d in depths],
        },
        'state_dict': state_dict,
    }
    dst_dir = osp.dirname(osp.abspath(str(dst)))
    os.makedirs(dst_dir, exist_ok=True)
    tmp = f'{dst}.tmp'
    torch.save(checkpoint, tmp)
    os.replace(tmp, dst)
    return checkpoint


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert DeepMind NFNet (Haiku) weights to nfnet_mm.')
    parser.add_argument('src', help='DeepMind file, e.g. F0_haiku.npz')
    parser.add_argument('dst', help='output checkpoint (.pth)')
    parser.add_argument(
        '--arch',
        help='NFNet arch name (f0..f7, f4+); inferred from the number of '
        'blocks when omitted')
    parser.add_argument(
        '--depths', type=int, nargs='+', help='blocks per stage, for an '
        'unnamed arch')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    ckpt = convert_file(args.src, args.dst, arch=args.arch, depths=args.depths)
    n = sum(v.numel() for v in ckpt['state_dict'].values())
    print(f'Converted {len(ckpt["state_dict"])} tensors ({n:,} values, '
          f'arch {ckpt["meta"]["arch"]}, depths {ckpt["meta"]["depths"]}) '
          f'to {args.dst}')


if __name__ == '__main__':
    main()

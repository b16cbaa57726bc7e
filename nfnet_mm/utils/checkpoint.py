"""Checkpoint files: weights-only loading with clear errors, key checks, atomic saves.

Importing this module changes nothing. :func:`load_checkpoint_file` loads with torch's
weights-only unpickler and :data:`SAFE_CHECKPOINT_GLOBALS`, the few types MMEngine's
``Runner`` checkpoints hold besides tensors; it never falls back to
``weights_only=False``. :func:`enable_safe_checkpoints`, the opt-in, is the one place
where we touch MMEngine: its local loader and its checkpoint savers.
"""
import contextlib
import os
import os.path as osp
import pickle
import re
import sys
import tempfile
import zipfile
from typing import IO, Any, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import save_checkpoint as _mmengine_save_checkpoint
from mmengine.utils import digit_version

__all__ = [
    'SAFE_CHECKPOINT_GLOBALS', 'CheckpointError', 'NotACheckpointError',
    'UnsafeCheckpointError', 'CheckpointMismatchError', 'load_checkpoint_file',
    'describe_unreadable',
    'check_state_dict', 'atomic_write', 'atomic_save_checkpoint',
    'enable_safe_checkpoints'
]

PathLike = Union[str, os.PathLike]


class CheckpointError(Exception):
    """A checkpoint file that cannot be used as asked; the message names the file."""


class NotACheckpointError(CheckpointError):
    """The file is missing, empty, truncated or not a PyTorch checkpoint at all."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """The checkpoint pickles objects outside the weights-only allow-list."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's keys or shapes differ from the model's."""


# HistoryBuffer pickles its statistics methods as getattr(HistoryBuffer, name).
_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``builtins.getattr`` while unpickling: HistoryBuffer's statistics methods only."""
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise UnsafeCheckpointError(
        f'the checkpoint asks for getattr({obj!r}, {name!r}); only '
        f'getattr(HistoryBuffer, m) for m in {list(_HISTORY_BUFFER_METHODS)} is allowed')


def _safe_globals() -> List[Tuple[Any, str]]:
    """Numpy objects under their numpy 1.x and 2.x names, HistoryBuffer, getattr."""
    multiarray = (np._core if hasattr(np, '_core') else np.core).multiarray  # numpy 2|1
    entries = [(HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
               (_history_buffer_getattr, 'builtins.getattr'),
               (np.ndarray, 'numpy.ndarray'), (np.dtype, 'numpy.dtype')]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        entries += [(multiarray.scalar, f'{module}.scalar'),
                    (multiarray._reconstruct, f'{module}._reconstruct')]
    # numpy >= 1.25 may pickle a dtype through its class (np.dtypes.Float64DType).
    if hasattr(np, 'dtypes'):
        for code in '?bhilqBHILQefdgFDG':
            cls = type(np.dtype(code))
            entries.append((cls, f'numpy.dtypes.{cls.__name__}'))
    return entries


#: ``(object, pickled name)`` pairs: what a checkpoint of MMEngine 0.10.7's ``Runner``
#: (message hub, optimizer, schedulers, EMA, our hooks) holds beyond torch's defaults.
SAFE_CHECKPOINT_GLOBALS: List[Tuple[Any, str]] = _safe_globals()

# torch >= 2.6 loads weights-only by default and lets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1
# lift that for callers that pass nothing: there we pass nothing, before we insist.
_WEIGHTS_ONLY = (None if digit_version(torch.__version__) >= digit_version('2.6.0')
                 else True)


def _allow_listed() -> contextlib.AbstractContextManager:
    """Adds the allow-list entries torch does not hold yet, for one load."""
    if not hasattr(torch.serialization, 'safe_globals'):  # torch < 2.5
        return contextlib.nullcontext()
    held = set(torch.serialization.get_safe_globals())
    return torch.serialization.safe_globals(
        [g for g in SAFE_CHECKPOINT_GLOBALS if g not in held])


def _forbidden_globals(err: BaseException) -> List[str]:
    """The pickled globals outside the allow-list that ``err`` refused, if any."""
    for exc in (err, err.__context__):  # torch re-raises ours as an UnpicklingError
        if isinstance(exc, UnsafeCheckpointError):
            return [str(exc)]
    return re.findall(r'GLOBAL (\S+)', str(err))  # the unpickler stops at the first


def describe_unreadable(path: str) -> str:
    """Why ``path`` is no checkpoint, from its first bytes (never printing them).

    Returns a phrase such as ``'is empty'`` or ``'is a text file'``, for errors
    of the form ``f'{path} {phrase}'``; the loaders and the converters share it.
    """
    with open(path, 'rb') as f:
        head = f.read(512)
    if not head:
        return 'is empty'
    if head.startswith(b'PK\x03\x04'):
        return ('is a zip archive of something else' if zipfile.is_zipfile(path)
                else 'is a damaged or truncated zip archive')
    if head[:1] == b'\x80' and head[1:2] in b'\x02\x03\x04\x05':
        return 'is a damaged or truncated pickle, or a pickle of something else'
    if all(32 <= c < 127 or c in b'\t\r\n' for c in head):
        return 'is a text file, neither a zip archive nor a pickle'
    return 'is neither a zip archive nor a pickle'


def load_checkpoint_file(path: PathLike, map_location: Any = 'cpu') -> Any:
    """Load a checkpoint file weights-only, with one clear error naming the file.

    Args:
        path (str | os.PathLike): The checkpoint file.
        map_location (Any): As in :func:`torch.load`. Defaults to ``'cpu'``.

    Returns:
        Any: What the file holds (a state dict or an MMEngine checkpoint dict).

    Raises:
        NotACheckpointError: The file is missing, empty, truncated or not a checkpoint.
        UnsafeCheckpointError: The file pickles objects outside the allow-list.
    """
    path = osp.expanduser(os.fspath(path))
    if not osp.isfile(path):
        raise NotACheckpointError(f'checkpoint {path!r} does not exist or is no file')
    try:
        with _allow_listed():
            return torch.load(path, map_location=map_location, weights_only=_WEIGHTS_ONLY)
    except Exception as err:  # noqa: BLE001 - every failure becomes one of two errors
        names = _forbidden_globals(err)
        if names:
            raise UnsafeCheckpointError(
                f'refusing to load checkpoint {path!r}: it pickles objects outside the '
                f'weights-only allow-list: {names}. Nothing from it was run. If you '
                'trust this file, allow those objects first with '
                '`torch.serialization.add_safe_globals([...])`.') from None
        if _is_torch_archive(path) and not isinstance(err, pickle.UnpicklingError):
            raise  # a sound file: the error is not about the file (e.g. map_location)
        raise NotACheckpointError(
            f'{path!r} {describe_unreadable(path)}, not a PyTorch checkpoint '
            f'({type(err).__name__} from torch.load)'
        ) from None


def _is_torch_archive(path: str) -> bool:
    """Whether ``path`` is a complete zip archive holding a pickled ``data.pkl``."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.rsplit('/', 1)[-1] == 'data.pkl' for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_from_local(filename: str, map_location: Any = None) -> Any:
    """MMEngine's local loader (same name, so its log line is unchanged), made safe."""
    return load_checkpoint_file(filename, map_location=map_location)


def _list(keys: List[str], limit: int = 8) -> str:
    more = f' ... and {len(keys) - limit} more' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def check_state_dict(expected: Mapping[str, Any], given: Mapping[str, Any],
                     source: str,
                     fix: str = 'Is it a checkpoint of this config?',
                     error: Optional[type] = None) -> None:
    """Refuse a state dict whose keys or shapes differ from the model's.

    Args:
        expected (Mapping[str, Any]): The model's state dict (tensors may be on the
            ``meta`` device).
        given (Mapping[str, Any]): The checkpoint's state dict.
        source (str): The file (and part of it) named in the error.
        fix (str): The error's last sentence.
        error (type, optional): A :class:`CheckpointMismatchError` subclass to raise.

    Raises:
        CheckpointMismatchError: One error listing missing, unexpected and misshaped
            keys (the first 8 of each, and their number).
    """
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    misshaped = [f'{k} {list(getattr(given[k], "shape", ()))} (model: {list(v.shape)})'
                 for k, v in expected.items() if k in given
                 and tuple(getattr(given[k], 'shape', ())) != tuple(v.shape)]
    problems = [f'{len(keys)} {what}: {_list(keys)}'
                for what, keys in (('missing', missing), ('unexpected', unexpected),
                                   ('with another shape', misshaped)) if keys]
    if problems:
        raise (error or CheckpointMismatchError)(
            f'{source} does not match the model: ' + '; '.join(problems) + f'. {fix}')


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = 'wb') -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` (or a symlink's target) on success.

    The data is fsynced before ``os.replace`` moves it over the target, so a reader sees
    the old file or the complete new one; if the block raises (or the process dies), the
    target is untouched and the temporary file is removed (on exceptions).

    Args:
        path (str | os.PathLike): The file to write; a symlink stays a link.
        mode (str): ``'wb'`` or ``'w'``. Defaults to ``'wb'``.

    Yields:
        IO: The open temporary file.
    """
    if mode not in ('wb', 'w'):
        raise ValueError(f'atomic_write mode must be "wb" or "w", got {mode!r}')
    target = osp.realpath(os.fspath(path))
    dirname = osp.dirname(target)
    os.makedirs(dirname, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dirname, prefix=f'.{osp.basename(target)}.',
                               suffix='.tmp')
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself, where directories sync
        dir_fd = os.open(dirname, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_save_checkpoint(checkpoint: dict, filename: str, file_client_args=None,
                           backend_args=None) -> None:
    """MMEngine's ``save_checkpoint``, atomic for local files; others go to MMEngine's."""
    if (file_client_args is not None or str(filename).startswith('pavi://')
            or not isinstance(get_file_backend(filename, backend_args=backend_args),
                              LocalBackend)):
        _mmengine_save_checkpoint(checkpoint, filename, file_client_args, backend_args)
        return
    with atomic_write(filename) as f:
        torch.save(checkpoint, f)


def _hook_open(file: Any, mode: str = 'r', *args, **kwargs) -> IO:
    """``open`` for ``CheckpointHook``: its ``last_checkpoint`` write becomes atomic."""
    if (mode == 'w' and not args and not kwargs and isinstance(file, (str, os.PathLike))
            and osp.basename(os.fspath(file)) == 'last_checkpoint'):
        return atomic_write(file, 'w')
    return open(file, mode, *args, **kwargs)


_enabled = False


def enable_safe_checkpoints() -> None:
    """The opt-in: MMEngine loads checkpoints safely and saves them atomically.

    Idempotent; call it before a ``Runner`` resumes or loads (our tools do; for any tool,
    ``'nfnet_mm.safe_checkpoints'`` in ``custom_imports``). torch's safe globals gain
    :data:`SAFE_CHECKPOINT_GLOBALS` (for every scheme), ``CheckpointLoader``'s local
    scheme becomes :func:`load_from_local`, ``save_checkpoint`` where MMEngine's runners
    look it up becomes :func:`atomic_save_checkpoint`, and ``CheckpointHook`` writes
    ``last_checkpoint`` through :func:`atomic_write`. MMEngine 0.10.7 otherwise cannot
    resume its own checkpoints under torch's weights-only default (>= 2.6), and a save
    killed half-way leaves a truncated file that ``--resume`` picks.
    """
    global _enabled
    if _enabled:
        return
    from mmengine import runner as mm_runner
    from mmengine.hooks import checkpoint_hook
    from mmengine.runner import checkpoint as mm_ckpt
    from mmengine.runner import runner as mm_runner_module

    if hasattr(torch.serialization, 'add_safe_globals'):  # torch >= 2.4
        torch.serialization.add_safe_globals(list(SAFE_CHECKPOINT_GLOBALS))
    mm_ckpt.CheckpointLoader.register_scheme(prefixes='', loader=load_from_local,
                                             force=True)
    for module in (mm_ckpt, mm_runner, mm_runner_module,
                   sys.modules.get('mmengine._strategy.deepspeed'),
                   sys.modules.get('mmengine._strategy.colossalai')):
        if getattr(module, 'save_checkpoint', None) is not None:
            module.save_checkpoint = atomic_save_checkpoint
    checkpoint_hook.open = _hook_open
    _enabled = True


"""MMEngine (<= 0.10.7) checkpoints under torch's weights-only loading (torch
>= 2.6, which MMEngine cannot resume from), saved atomically; never with
``weights_only=False``. :func:`enable_safe_checkpoints` is the opt-in."""
import contextlib
import os
import os.path as osp
import pickle
import sys
import zipfile
from typing import IO, Any, List, Tuple, Union

import mmengine
import numpy as np
import torch
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.logging import print_log
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import \
    save_checkpoint as _mmengine_save_checkpoint
from mmengine.utils import digit_version

from ..utils.checkpoint import (NotACheckpointError, UnsafeCheckpointError,
                                atomic_save, atomic_write, describe_unreadable,
                                forbidden_globals)

__all__ = [
    'SAFE_CHECKPOINT_GLOBALS', 'TARGETED_MMENGINE', 'load_checkpoint_file',
    'enable_safe_checkpoints'
]

#: The newest MMEngine release these workarounds are written and tested for.
TARGETED_MMENGINE = '0.10.7'

# HistoryBuffer pickles its statistics methods as getattr(HistoryBuffer, name).
_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` while unpickling: HistoryBuffer's statistics only."""
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise UnsafeCheckpointError(
        f'the checkpoint asks for getattr({obj!r}, {name!r}); only '
        f'getattr(HistoryBuffer, m) for m in {list(_HISTORY_BUFFER_METHODS)} '
        'is allowed')


def _safe_globals() -> List[Tuple[Any, str]]:
    """Numpy objects (1.x and 2.x names), HistoryBuffer, getattr."""
    multiarray = (np._core
                  if hasattr(np, '_core') else np.core).multiarray  # numpy 2|1
    entries = [(HistoryBuffer,
                'mmengine.logging.history_buffer.HistoryBuffer'),
               (_history_buffer_getattr, 'builtins.getattr'),
               (np.ndarray, 'numpy.ndarray'), (np.dtype, 'numpy.dtype')]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        entries += [(multiarray.scalar, f'{module}.scalar'),
                    (multiarray._reconstruct, f'{module}._reconstruct')]
    # numpy >= 1.25 may pickle a dtype as its class (np.dtypes.Float64DType)
    if hasattr(np, 'dtypes'):
        for code in '?bhilqBHILQefdgFDG':
            cls = type(np.dtype(code))
            entries.append((cls, f'numpy.dtypes.{cls.__name__}'))
    return entries


#: ``(object, name)`` pairs MMEngine 0.10.7 checkpoints hold beyond torch's.
SAFE_CHECKPOINT_GLOBALS: List[Tuple[Any, str]] = _safe_globals()

# torch >= 2.6: pass nothing (weights-only by default, which the user may lift
# with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1); older torch: insist.
_WEIGHTS_ONLY = (None if digit_version(torch.__version__)
                 >= digit_version('2.6.0') else True)


def _allow_listed() -> contextlib.AbstractContextManager:
    """Adds the allow-list entries torch does not hold yet, for one load."""
    if not hasattr(torch.serialization, 'safe_globals'):  # torch < 2.5
        return contextlib.nullcontext()
    held = set(torch.serialization.get_safe_globals())
    return torch.serialization.safe_globals(
        [g for g in SAFE_CHECKPOINT_GLOBALS if g not in held])


def load_checkpoint_file(path: Union[str, os.PathLike],
                         map_location: Any = 'cpu') -> Any:
    """Load a checkpoint file weights-only, with one clear error naming it.

    Args:
        path (str | os.PathLike): The checkpoint file.
        map_location (Any): As in :func:`torch.load`. Defaults to ``'cpu'``.
    """
    path = osp.expanduser(os.fspath(path))
    if not osp.isfile(path):
        raise NotACheckpointError(
            f'checkpoint {path!r} does not exist or is no file')
    try:
        with _allow_listed():
            return torch.load(
                path, map_location=map_location, weights_only=_WEIGHTS_ONLY)
    except Exception as err:  # noqa: BLE001
        names = forbidden_globals(err)
        if names:
            raise UnsafeCheckpointError(
                f'refusing to load checkpoint {path!r}: it pickles objects '
                f'outside the weights-only allow-list: {names}. Nothing from '
                'it was run. If you trust this file, allow those objects '
                'first with '
                '`torch.serialization.add_safe_globals([...])`.') from None
        if _is_torch_archive(path) and not isinstance(err,
                                                      pickle.UnpicklingError):
            # a sound file: the error is not about the file (e.g. map_location)
            raise
        raise NotACheckpointError(
            f'{path!r} {describe_unreadable(path)}, not a PyTorch checkpoint '
            f'({type(err).__name__} from torch.load)') from None


def _is_torch_archive(path: str) -> bool:
    """Whether ``path`` is a complete zip archive holding a ``data.pkl``."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(
                n.rsplit('/', 1)[-1] == 'data.pkl' for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_from_local(filename: str, map_location: Any = None) -> Any:
    """MMEngine's local loader (same name, same log line), made safe."""
    return load_checkpoint_file(filename, map_location=map_location)


def atomic_save_checkpoint(checkpoint: dict,
                           filename: str,
                           file_client_args=None,
                           backend_args=None) -> None:
    """MMEngine's ``save_checkpoint``, atomic for local files."""
    if (file_client_args is not None or str(filename).startswith('pavi://')
            or not isinstance(
                get_file_backend(filename, backend_args=backend_args),
                LocalBackend)):
        _mmengine_save_checkpoint(checkpoint, filename, file_client_args,
                                  backend_args)
        return
    atomic_save(checkpoint, filename)


def _hook_open(file: Any, mode: str = 'r', *args, **kwargs) -> IO:
    """``open`` for ``CheckpointHook``: ``last_checkpoint`` writes atomic."""
    if (mode == 'w' and not args and not kwargs
            and isinstance(file, (str, os.PathLike))
            and osp.basename(os.fspath(file)) == 'last_checkpoint'):
        return atomic_write(file, 'w')
    return open(file, mode, *args, **kwargs)


_enabled = False


def enable_safe_checkpoints() -> None:
    """The opt-in: MMEngine loads checkpoints safely and saves them atomically.

    Idempotent; call it before a ``Runner`` resumes or loads. Adds
    :data:`SAFE_CHECKPOINT_GLOBALS` to torch's safe globals and patches
    MMEngine's local loader, ``save_checkpoint`` and ``CheckpointHook``'s
    ``last_checkpoint`` write; on an MMEngine newer than 0.10.7: a no-op.
    """
    global _enabled
    if _enabled:
        return
    _enabled = True
    if digit_version(mmengine.__version__) > digit_version(TARGETED_MMENGINE):
        print_log(
            f'nfnet_mm: MMEngine {mmengine.__version__} is newer than '
            f'{TARGETED_MMENGINE}, the last version our checkpoint fixes '
            'target; they are not applied.',
            logger='current')
        return
    from mmengine import runner as mm_runner
    from mmengine.hooks import checkpoint_hook
    from mmengine.runner import checkpoint as mm_ckpt
    from mmengine.runner import runner as mm_runner_module

    if hasattr(torch.serialization, 'add_safe_globals'):  # torch >= 2.4
        torch.serialization.add_safe_globals(list(SAFE_CHECKPOINT_GLOBALS))
    mm_ckpt.CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local, force=True)
    for module in (mm_ckpt, mm_runner, mm_runner_module,
                   sys.modules.get('mmengine._strategy.deepspeed'),
                   sys.modules.get('mmengine._strategy.colossalai')):
        if getattr(module, 'save_checkpoint', None) is not None:
            module.save_checkpoint = atomic_save_checkpoint
    checkpoint_hook.open = _hook_open

"""Safe checkpoint loading (weights_only allow-list) and atomic checkpoint saving.

Two breakages of the MMEngine 0.10.x / recent PyTorch stack are fixed here, once, at
``import nfnet_mm``:

* **Loading.** Since PyTorch 2.6 ``torch.load`` defaults to ``weights_only=True``, and
  MMEngine's checkpoints (written by ``Runner.save_checkpoint``) hold more than tensors:
  the message hub's ``HistoryBuffer`` objects (with numpy arrays and scalars inside and
  their statistics methods pickled as ``getattr(HistoryBuffer, 'mean')``). MMEngine's
  loaders call ``torch.load`` without ``weights_only``, so resuming fails. We allow-list
  exactly the types such a checkpoint contains (see :data:`SAFE_CHECKPOINT_GLOBALS`), make
  MMEngine's local loader call :func:`safe_torch_load` (always ``weights_only=True``) and
  turn any refusal by any MMEngine loader into one :class:`UnsafeCheckpointError` naming
  the offending globals. There is no fall back to ``weights_only=False``.
  ``builtins.getattr`` is not allow-listed as such: the name resolves to
  :func:`_history_buffer_getattr`, which only returns HistoryBuffer's own statistics
  methods and refuses any other attribute.
* **Saving.** MMEngine writes a checkpoint and the ``last_checkpoint`` pointer in place,
  so a save killed half-way leaves a truncated file that ``--resume auto`` then picks.
  :func:`atomic_save_checkpoint` (installed as MMEngine's ``save_checkpoint``) and the
  ``last_checkpoint`` write of ``CheckpointHook`` go through :func:`atomic_write`: write a
  temporary file in the same directory, fsync it, ``os.replace`` it over the target.
"""
import builtins
import contextlib
import os
import os.path as osp
import pickle
import re
import sys
import tempfile
from typing import IO, Any, Callable, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.logging.history_buffer import HistoryBuffer

__all__ = [
    'SAFE_CHECKPOINT_GLOBALS', 'UnsafeCheckpointError', 'atomic_save_checkpoint',
    'atomic_write', 'patch_mmengine_checkpointing', 'register_safe_globals',
    'safe_torch_load'
]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint pickles an object outside the weights-only allow-list."""


# The statistics methods HistoryBuffer pickles with its instances (MMEngine 0.10.x).
_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """Stand-in for ``builtins.getattr`` while unpickling a checkpoint.

    HistoryBuffer pickles its statistics methods as ``getattr(HistoryBuffer, name)``;
    this returns exactly those functions and refuses anything else, so allowing the
    name ``builtins.getattr`` does not open arbitrary attribute access.

    Args:
        obj (Any): The object the pickle asks an attribute of.
        name (str): The attribute name.

    Returns:
        Any: ``HistoryBuffer.<name>`` for an allowed statistics method.

    Raises:
        UnsafeCheckpointError: For any other object or attribute.
    """
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise UnsafeCheckpointError(
        f'The checkpoint asks for getattr({obj!r}, {name!r}); only '
        f'getattr(HistoryBuffer, m) for m in {list(_HISTORY_BUFFER_METHODS)} is allowed.')


def _numpy_globals() -> List[Tuple[Any, str]]:
    """Numpy objects in MMEngine checkpoints, under their numpy 1.x and 2.x names."""
    try:
        multiarray = np._core.multiarray  # numpy >= 2
    except AttributeError:  # pragma: no cover - numpy 1.x
        multiarray = np.core.multiarray
    entries = [(np.ndarray, 'numpy.ndarray'), (np.dtype, 'numpy.dtype')]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        entries.append((multiarray.scalar, f'{module}.scalar'))
        entries.append((multiarray._reconstruct, f'{module}._reconstruct'))
    # numpy >= 1.25 may pickle a dtype through its class (np.dtypes.Float64DType).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        for code in '?bhilqBHILQefdgFDG':
            cls = type(np.dtype(code))
            entries.append((cls, f'numpy.dtypes.{cls.__name__}'))
    return entries


def _safe_globals() -> List[Tuple[Any, str]]:
    entries = [(HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
               (_history_buffer_getattr, 'builtins.getattr')]
    return entries + _numpy_globals()


#: ``(object, pickled name)`` pairs added to ``torch.serialization``'s safe globals:
#: all that a checkpoint of MMEngine 0.10.7's ``Runner`` (with the message hub, optimizer,
#: parameter schedulers, EMA and our hooks) holds besides what torch allows by default.
SAFE_CHECKPOINT_GLOBALS: List[Tuple[Any, str]] = _safe_globals()


def register_safe_globals() -> None:
    """Add :data:`SAFE_CHECKPOINT_GLOBALS` to torch's weights-only allow-list.

    Idempotent. Does nothing on torch < 2.4 (no ``add_safe_globals``), where only
    checkpoints made of tensors and plain containers can be loaded safely.
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:
        add(list(SAFE_CHECKPOINT_GLOBALS))


def _global_name(entry: Any) -> str:
    if isinstance(entry, tuple):
        return entry[1]
    return f'{entry.__module__}.{entry.__qualname__}'


def _offending_globals(f: Any) -> List[str]:
    """Globals in the checkpoint file ``f`` that are not allow-listed (best effort)."""
    finder = getattr(torch.serialization, 'get_unsafe_globals_in_checkpoint', None)
    if finder is None or not isinstance(f, (str, os.PathLike)):
        return []
    try:
        found = finder(f)
    except Exception:  # noqa: BLE001 - only used to improve the message
        return []
    allowed = {_global_name(g) for g in torch.serialization.get_safe_globals()}
    return [name for name in found if name not in allowed]


def _refusal(source: Any, err: BaseException) -> UnsafeCheckpointError:
    names = _offending_globals(source)
    if not names:
        names = re.findall(r'GLOBAL (\S+)', str(err))
    what = (f'pickled objects outside the allow-list: {names}'
            if names else 'pickled objects outside the allow-list')
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    detail = next((line for line in lines
                   if re.search(r'GLOBAL|global|getattr|unrecognized', line)),
                  lines[-1] if lines else type(err).__name__)
    return UnsafeCheckpointError(
        f'Refusing to load checkpoint {source!r}: it contains {what}. nfnet_mm loads '
        f'checkpoints with weights_only=True and never runs code from them. If you '
        f'trust this file, allow-list those objects before loading: '
        f'`torch.serialization.add_safe_globals([<the objects named above>])`. '
        f'Reason: {detail}')


def safe_torch_load(f: Union[str, os.PathLike, IO[bytes]],
                    map_location: Any = None) -> Any:
    """``torch.load(f, weights_only=True)`` with one clear error on refusal.

    Args:
        f (str | os.PathLike | IO[bytes]): The checkpoint file or a readable buffer.
        map_location (Any): As in :func:`torch.load`. Defaults to None.

    Returns:
        Any: The loaded checkpoint.

    Raises:
        UnsafeCheckpointError: If the file pickles an object outside the allow-list.
    """
    register_safe_globals()
    try:
        return torch.load(f, map_location=map_location, weights_only=True)
    except UnsafeCheckpointError as err:
        raise _refusal(f, err) from None
    except pickle.UnpicklingError as err:
        raise _refusal(f, err) from None


def _load_from_local(filename: str, map_location: Any = None) -> Any:
    """MMEngine's local checkpoint loader, loading with :func:`safe_torch_load`."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_torch_load(filename, map_location=map_location)


def _fsync_dir(dirname: str) -> None:
    try:
        fd = os.open(dirname, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: Union[str, os.PathLike], mode: str = 'wb') -> Iterator[IO]:
    """Open a temporary file next to ``path`` that replaces ``path`` on success.

    The data is flushed and fsynced before ``os.replace`` moves it over ``path``, so a
    reader sees either the old file or the complete new one. If the block raises (or
    the process dies), ``path`` is untouched; the temporary file is removed on errors.

    Args:
        path (str | os.PathLike): The file to write.
        mode (str): ``'wb'`` or ``'w'``. Defaults to ``'wb'``.

    Yields:
        IO: The open temporary file.
    """
    if mode not in ('wb', 'w'):
        raise ValueError(f'atomic_write mode must be "wb" or "w", got {mode!r}')
    path = os.fspath(path)
    dirname = osp.dirname(osp.abspath(path))
    os.makedirs(dirname, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=dirname, prefix=f'.{osp.basename(path)}.', suffix='.tmp')
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(dirname)


_ORIGINAL_SAVE: Optional[Callable] = None


def atomic_save_checkpoint(checkpoint: dict,
                           filename: str,
                           file_client_args: Optional[dict] = None,
                           backend_args: Optional[dict] = None) -> None:
    """MMEngine's ``save_checkpoint``, atomic for local files.

    Local paths are written through :func:`atomic_write`; other back-ends (``pavi://``,
    ``s3://``, a ``file_client_args`` client) go to MMEngine's own function.

    Args:
        checkpoint (dict): The checkpoint to save.
        filename (str): Where to save it.
        file_client_args (dict, optional): Deprecated MMEngine file client arguments.
            Defaults to None.
        backend_args (dict, optional): MMEngine file back-end arguments.
            Defaults to None.
    """
    local = (file_client_args is None and not str(filename).startswith('pavi://')
             and isinstance(
                 get_file_backend(filename, backend_args=backend_args), LocalBackend))
    if not local:
        original = _ORIGINAL_SAVE
        if original is None:  # pragma: no cover - patch not installed
            from mmengine.runner import checkpoint as mm_ckpt
            original = mm_ckpt.save_checkpoint
        original(checkpoint, filename, file_client_args=file_client_args,
                 backend_args=backend_args)
        return
    with atomic_write(filename, 'wb') as f:
        torch.save(checkpoint, f)


def _hook_open(file: Any, mode: str = 'r', *args, **kwargs) -> IO:
    """``open`` as seen by MMEngine's ``checkpoint_hook`` module.

    The hook rewrites ``<work_dir>/last_checkpoint`` with ``open(path, 'w')``; that one
    write becomes atomic, every other call is the builtin ``open``.
    """
    if (mode == 'w' and not args and not kwargs
            and isinstance(file, (str, os.PathLike))
            and osp.basename(os.fspath(file)) == 'last_checkpoint'):
        return _AtomicTextFile(file)
    return builtins.open(file, mode, *args, **kwargs)


class _AtomicTextFile:
    """Context manager writing a small text file atomically on exit."""

    def __init__(self, path: Union[str, os.PathLike]):
        self._cm = atomic_write(path, 'w')
        self._file = None

    def __enter__(self) -> IO:
        self._file = self._cm.__enter__()
        return self._file

    def __exit__(self, *exc) -> Any:
        return self._cm.__exit__(*exc)


def _wrap_loader_dispatch(load_checkpoint: Callable) -> Callable:
    """Wrap ``CheckpointLoader.load_checkpoint`` so every scheme refuses clearly."""

    def load_checkpoint_safely(cls, filename, map_location=None, logger='current'):
        register_safe_globals()
        try:
            return load_checkpoint.__func__(cls, filename, map_location, logger)
        except UnsafeCheckpointError:
            raise
        except pickle.UnpicklingError as err:
            raise _refusal(filename, err) from None

    load_checkpoint_safely._nfnet_mm_safe = True
    return classmethod(load_checkpoint_safely)


def patch_mmengine_checkpointing() -> None:
    """Install safe loading and atomic saving into MMEngine. Idempotent.

    * registers :data:`SAFE_CHECKPOINT_GLOBALS`;
    * MMEngine's local scheme loader (``CheckpointLoader``, prefix ``''``) becomes
      :func:`_load_from_local`, and ``CheckpointLoader.load_checkpoint`` turns any
      weights-only refusal of any scheme into :class:`UnsafeCheckpointError`;
    * ``save_checkpoint`` in ``mmengine.runner`` (and the modules that imported it by
      name) becomes :func:`atomic_save_checkpoint`;
    * ``CheckpointHook`` writes ``last_checkpoint`` atomically.
    """
    global _ORIGINAL_SAVE
    from mmengine import runner as mm_runner
    from mmengine.hooks import checkpoint_hook
    from mmengine.runner import checkpoint as mm_ckpt
    from mmengine.runner import runner as mm_runner_module

    register_safe_globals()

    loader = mm_ckpt.CheckpointLoader
    loader.register_scheme(prefixes='', loader=_load_from_local, force=True)
    current = loader.__dict__['load_checkpoint']
    if not getattr(current.__func__, '_nfnet_mm_safe', False):
        loader.load_checkpoint = _wrap_loader_dispatch(current)

    if _ORIGINAL_SAVE is None:
        _ORIGINAL_SAVE = mm_ckpt.save_checkpoint
    for module in (mm_ckpt, mm_runner, mm_runner_module,
                   sys.modules.get('mmengine._strategy.deepspeed'),
                   sys.modules.get('mmengine._strategy.colossalai')):
        if module is not None and getattr(module, 'save_checkpoint', None) is not None:
            module.save_checkpoint = atomic_save_checkpoint

    checkpoint_hook.open = _hook_open


patch_mmengine_checkpointing()

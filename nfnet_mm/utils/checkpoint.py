"""Checkpoint files: clear errors, key checks, prefix strip, atomic writes.

Host-independent; MMEngine's loading and patches: :mod:`nfnet_mm.compat`."""
import contextlib
import os
import os.path as osp
import pickle
import re
import tempfile
import zipfile
from typing import IO, Any, Dict, Iterator, List, Mapping, Optional, Union

__all__ = [
    'CheckpointError', 'NotACheckpointError', 'UnsafeCheckpointError',
    'CheckpointMismatchError', 'describe_unreadable', 'forbidden_globals',
    'strip_prefix', 'check_state_dict', 'atomic_write', 'atomic_save'
]

PathLike = Union[str, os.PathLike]


class CheckpointError(Exception):
    """A checkpoint file that cannot be used as asked; the message names it."""


class NotACheckpointError(CheckpointError):
    """The file is missing, empty, truncated or not a PyTorch checkpoint."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """The checkpoint pickles objects outside the weights-only allow-list."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's keys or shapes differ from the model's."""


def forbidden_globals(err: BaseException) -> List[str]:
    """The pickled globals an unpickler refused: ``names`` of ``err`` or its
    context, an :class:`UnsafeCheckpointError`'s message, or torch's ``GLOBAL
    <name>`` (torch stops at the first)."""
    for exc in (err, err.__context__):  # torch re-raises ours
        if getattr(exc, 'names', None):
            return list(exc.names)
        if isinstance(exc, UnsafeCheckpointError):
            return [str(exc)]
    return re.findall(r'GLOBAL (\S+)', str(err))


def describe_unreadable(path: str) -> str:
    """Why ``path`` is no checkpoint, as a phrase for ``f'{path} {phrase}'``
    (e.g. ``'is empty'``), from its first bytes (never printing them)."""
    with open(path, 'rb') as f:
        head = f.read(512)
    if not head:
        return 'is empty'
    if head.startswith(b'PK\x03\x04'):
        return ('is a zip archive of something else'
                if zipfile.is_zipfile(path) else
                'is a damaged or truncated zip archive')
    if head[:1] == b'\x80' and head[1:2] in b'\x02\x03\x04\x05':
        return ('is a damaged or truncated pickle, or a pickle of something '
                'else')
    if all(32 <= c < 127 or c in b'\t\r\n' for c in head):
        return 'is a text file, neither a zip archive nor a pickle'
    return 'is neither a zip archive nor a pickle'


def strip_prefix(state_dict: Mapping[str, Any],
                 prefix: str = 'module.') -> Dict[str, Any]:
    """``state_dict`` with ``prefix`` (default: DDP's) removed from keys."""
    return {
        k[len(prefix):] if k.startswith(prefix) else k: v
        for k, v in state_dict.items()
    }


def _list(keys: List[str], limit: int = 8) -> str:
    more = f' ... and {len(keys) - limit} more' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def check_state_dict(expected: Mapping[str, Any],
                     given: Mapping[str, Any],
                     source: str,
                     fix: str = 'Is it a checkpoint of this config?',
                     error: Optional[type] = None) -> None:
    """Refuse a state dict whose keys or shapes differ from the model's.

    Args:
        expected (Mapping[str, Any]): The model's state dict (may be meta).
        given (Mapping[str, Any]): The checkpoint's state dict.
        source (str): The file (and part of it) named in the error.
        fix (str): The error's last sentence.
        error (type, optional): A :class:`CheckpointMismatchError` subclass.
    """
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    misshaped = [
        f'{k} {list(getattr(given[k], "shape", ()))} (model: {list(v.shape)})'
        for k, v in expected.items() if k in given
        and tuple(getattr(given[k], 'shape', ())) != tuple(v.shape)
    ]
    problems = [
        f'{len(keys)} {what}: {_list(keys)}'
        for what, keys in (('missing', missing), ('unexpected', unexpected),
                           ('with another shape', misshaped)) if keys
    ]
    if problems:
        raise (error or CheckpointMismatchError
               )(f'{source} does not match the model: ' + '; '.join(problems) +
                 f'. {fix}')


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = 'wb') -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` (or a symlink's target),
    fsynced, on success; if the block raises, the target is untouched.

    Args:
        path (str | os.PathLike): The file to write; a symlink stays a link.
        mode (str): ``'wb'`` or ``'w'``. Defaults to ``'wb'``.
    """
    if mode not in ('wb', 'w'):
        raise ValueError(
            f'atomic_write mode must be "wb" or "w", got {mode!r}')
    target = osp.realpath(os.fspath(path))
    dirname = osp.dirname(target)
    os.makedirs(dirname, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=dirname, prefix=f'.{osp.basename(target)}.', suffix='.tmp')
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
    with contextlib.suppress(OSError):  # the rename, where directories sync
        dir_fd = os.open(dirname, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_save(obj: Any, path: PathLike) -> None:
    """``torch.save(obj)`` to ``path`` through :func:`atomic_write`."""
    import torch
    with atomic_write(path) as f:
        torch.save(obj, f)

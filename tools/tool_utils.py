"""What ``tools/train.py`` and ``tools/test.py`` share: MMPretrain's
command-line conventions (launcher, work dir, dataloader defaults),
``pin_memory`` only with an accelerator, the runner, and the host's warnings
that no user setting avoids.

The tools import this module before ``nfnet_mm`` (it sits beside them, on the
path of a script run from ``tools/``): its warning filters must be in place
before MMPretrain is imported. They are host workarounds, listed with the
others in :mod:`nfnet_mm.compat`:

- mmcv-lite 2.x: ``mmcv.cnn.bricks.transformer`` (MMPretrain imports it) warns
  that it cannot import ``MultiScaleDeformableAttention``; nfnet_mm needs no
  mmcv op.
- setuptools >= 81 deprecates ``pkg_resources``, which MMEngine 0.10.x's
  ``package_utils`` imports (``mmpretrain::`` configs).
- MMEngine 0.10.x's ``CheckpointHook`` builds a ``FileClient`` (with a
  ``HardDiskBackend``) itself, then logs their deprecation as WARNINGs.
"""
import argparse
import os
import os.path as osp
import re
import warnings
from typing import Sequence

warnings.filterwarnings('ignore',
                        r'Fail to import ``MultiScaleDeformableAttention``',
                        UserWarning)
warnings.filterwarnings('ignore', r'pkg_resources is deprecated', UserWarning)

import torch  # noqa: E402
from mmengine.config import Config, ConfigDict  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

__all__ = ['add_launcher_args', 'apply_common_args', 'build_runner']


def add_launcher_args(parser: argparse.ArgumentParser) -> None:
    """``--launcher``, and ``--local-rank`` as torch.distributed.launch passes
    it."""
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def _has_accelerator() -> bool:
    accelerator = getattr(torch, 'accelerator', None)  # torch >= 2.6
    return accelerator.is_available(
    ) if accelerator else torch.cuda.is_available()


def apply_common_args(cfg: Config, args: argparse.Namespace,
                      loaders: Sequence[str]) -> Config:
    """Default scope, launcher, work dir and the ``loaders``' defaults, in
    place.

    ``work_dir``: ``--work-dir`` > the config's >
    ``./work_dirs/<config name>``. Loaders get ``default_collate``,
    ``persistent_workers`` only with workers, and ``pin_memory`` only with an
    accelerator (torch warns per loader otherwise).
    """
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    cfg.setdefault('default_scope', 'mmpretrain')
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    pin = _has_accelerator() and not args.no_pin_memory
    for field in loaders:
        if cfg.get(field, None) is None:
            continue
        loader = ConfigDict(
            pin_memory=pin, collate_fn=dict(type='default_collate'))
        loader.update(cfg[field])
        loader.pin_memory = loader.pin_memory and pin
        loader.persistent_workers = (
            loader.get('persistent_workers', True)
            and not getattr(args, 'no_persistent_workers', False)
            and loader.get('num_workers', 0) > 0)
        cfg[field] = loader
    return cfg


_MMENGINE_OWN_DEPRECATIONS = re.compile(
    r'^"(FileClient" will be deprecated|HardDiskBackend" is the alias of)')


def build_runner(cfg: Config) -> Runner:
    """The config's ``runner_type`` if set, else MMEngine's ``Runner``."""
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(
        cfg)
    runner.logger.addFilter(lambda record: not _MMENGINE_OWN_DEPRECATIONS.
                            match(record.getMessage()))
    return runner

"""Train a model with MMPretrain's Runner and nfnet_mm's modules.

The options follow MMPretrain's ``tools/train.py``. Differences:

* ``nfnet_mm`` is imported (registering its modules and its checkpoint fixes) before
  the config is read, and added to the config's ``custom_imports`` so the config dumped
  into the work dir runs again with any MMPretrain tool.
* ``--amp`` switches the optimizer wrapper to *its own* AMP variant
  (:func:`nfnet_mm.engine.optimizers.amp_optim_wrapper_type`) and refuses a wrapper it
  cannot switch, where MMPretrain's script silently replaces any wrapper (AGC, SAM, ...)
  with ``AmpOptimWrapper``.

Example::

    python tools/train.py configs/fashion_mnist/nfnet-demo_1xb128_fashion-mnist.py
    python tools/train.py CONFIG --resume            # resume from the work dir's latest
    python tools/train.py CONFIG --resume PATH.pth   # resume from a given checkpoint
"""
import argparse
import os
import os.path as osp
from copy import deepcopy
from typing import List, Optional

import nfnet_mm  # noqa: F401  (registers modules, safe loading, atomic saves)
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from nfnet_mm.engine.optimizers import amp_optim_wrapper_type


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line (MMPretrain's options)."""
    parser = argparse.ArgumentParser(description='Train a model (nfnet_mm)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint; with no value, resume from the latest '
        'checkpoint in the work dir (its `last_checkpoint`)')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='automatic mixed precision: switch the optim wrapper to its AMP variant')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual over the base batch size')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='disable pin_memory in the dataloaders')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='disable persistent_workers in the dataloaders')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, as key=value pairs (e.g. '
        'train_cfg.max_epochs=1 optim_wrapper.optimizer.lr=0.1); lists as '
        'key="[a,b]"; no white space')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torchrun sets LOCAL_RANK).
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def enable_amp(cfg: Config) -> Config:
    """Switch ``cfg.optim_wrapper`` to the AMP variant of its type, in place.

    ``OptimWrapper`` becomes ``AmpOptimWrapper``, a wrapper of ours its ``amp_variant``,
    an AMP wrapper stays. ``loss_scale`` is left to the wrapper's own default (MMEngine's
    ``AmpOptimWrapper``: dynamic; ours: ``'auto'``, dynamic for float16 and none for
    bfloat16, where AGC's non-finite skip limit then applies).

    Args:
        cfg (Config): The config.

    Returns:
        Config: The same config.

    Raises:
        ValueError: If the config has no ``optim_wrapper`` or its type has no AMP
            variant (a custom wrapper is never replaced silently).
    """
    if cfg.get('optim_wrapper', None) is None:
        raise ValueError('--amp needs an `optim_wrapper` in the config, found none')
    wrapper = cfg.optim_wrapper
    wrapper_type = wrapper.get('type', 'OptimWrapper')
    if not isinstance(wrapper_type, str):
        wrapper_type = getattr(wrapper_type, '__name__', str(wrapper_type))
    new_type = amp_optim_wrapper_type(wrapper_type)
    wrapper.type = new_type
    return cfg


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line options to the config.

    Args:
        cfg (Config): The config read from ``args.config``.
        args (argparse.Namespace): From :func:`parse_args`.

    Returns:
        Config: The updated config.
    """
    imports = cfg.get('custom_imports', None) or dict(imports=[])
    imports = dict(imports)
    modules = imports.get('imports', [])
    modules = [modules] if isinstance(modules, str) else list(modules)
    if 'nfnet_mm' not in modules:
        modules.append('nfnet_mm')
    imports['imports'] = modules
    imports.setdefault('allow_failed_imports', False)
    cfg.custom_imports = imports
    cfg.setdefault('default_scope', 'mmpretrain')

    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    cfg.launcher = args.launcher

    # work_dir: command line > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    if args.auto_scale_lr:
        if cfg.get('auto_scale_lr', None) is None:
            raise ValueError('--auto-scale-lr needs `auto_scale_lr = dict('
                             'base_batch_size=...)` in the config, found none')
        cfg.auto_scale_lr.enable = True

    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(field, None)
        if loader is None:
            continue
        merged = ConfigDict(
            pin_memory=not args.no_pin_memory,
            persistent_workers=(not args.no_persistent_workers
                                and loader.get('num_workers', 0) > 0),
            collate_fn=dict(type='default_collate'))
        merged.update(deepcopy(loader))
        if args.no_pin_memory:
            merged.pin_memory = False
        if args.no_persistent_workers or merged.get('num_workers', 0) == 0:
            merged.persistent_workers = False
        cfg[field] = merged

    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    # After --cfg-options, so that a wrapper type set there is the one switched.
    if args.amp:
        enable_amp(cfg)
    return cfg


def build_runner(cfg: Config) -> Runner:
    """Build the runner (``runner_type`` from the config if set)."""
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)  # honours the config's custom_imports
    cfg = merge_args(cfg, args)
    runner = build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    main()

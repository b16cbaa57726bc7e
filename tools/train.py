"""Train a model with MMPretrain's Runner and nfnet_mm's modules.

MMPretrain's options; what differs (the checkpoint opt-in and
``custom_imports``, ``--amp`` switching to the wrapper's own AMP variant,
``--resume``, quiet output) is listed in README.md, "Training and testing
tools". Example::

    python tools/train.py \
        configs/fashion_mnist/nfnet-demo_1xb128_fashion-mnist.py
"""
import tool_utils  # isort:skip (first: its warning filters)

import argparse
from typing import List, Optional

from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import find_latest_checkpoint

from nfnet_mm.compat import enable_safe_checkpoints
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
        help='resume from this checkpoint; with no value, resume from the '
        'latest checkpoint in the work dir (its `last_checkpoint`)')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='automatic mixed '
        'precision: switch the optim wrapper to its AMP variant')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the '
        'learning rate by the actual over the base batch size')
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
    tool_utils.add_launcher_args(parser)
    return parser.parse_args(argv)


def enable_amp(cfg: Config) -> Config:
    """Switch ``cfg.optim_wrapper`` to the AMP variant of its type, in place.

    ``OptimWrapper`` becomes ``AmpOptimWrapper``, a wrapper of ours its
    ``amp_variant``, an AMP wrapper stays. ``loss_scale`` is left to the
    wrapper's own default (MMEngine's ``AmpOptimWrapper``: dynamic; ours:
    ``'auto'``, dynamic for float16 and none for bfloat16, where AGC's
    non-finite skip limit then applies). Returns ``cfg``.

    Raises:
        ValueError: If the config has no ``optim_wrapper`` or its type has no
            AMP variant (a custom wrapper is never replaced silently).
    """
    if cfg.get('optim_wrapper', None) is None:
        raise ValueError(
            '--amp needs an `optim_wrapper` in the config, found none')
    wrapper = cfg.optim_wrapper
    wrapper_type = wrapper.get('type', 'OptimWrapper')
    if not isinstance(wrapper_type, str):
        wrapper_type = getattr(wrapper_type, '__name__', str(wrapper_type))
    new_type = amp_optim_wrapper_type(wrapper_type)
    wrapper.type = new_type
    return cfg


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line options (:func:`parse_args`) to ``cfg``, in place
    (``--cfg-options`` first, as MMPretrain's tool does); returns ``cfg``."""
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    imports = dict(cfg.get('custom_imports', None) or dict(imports=[]))
    modules = imports.get('imports', [])
    modules = [modules] if isinstance(modules, str) else list(modules)
    modules += [
        m for m in ('nfnet_mm', 'nfnet_mm.compat.safe_checkpoints')
        if m not in modules
    ]
    imports['imports'] = modules
    imports.setdefault('allow_failed_imports', False)
    cfg.custom_imports = imports

    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    tool_utils.apply_common_args(
        cfg, args, ('train_dataloader', 'val_dataloader', 'test_dataloader'))

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

    # after --cfg-options (merged first, as MMPretrain's tool does): a wrapper
    # type set there is the one switched
    if args.amp:
        enable_amp(cfg)
    return cfg


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    enable_safe_checkpoints()
    cfg = Config.fromfile(args.config)  # honours the config's custom_imports
    cfg = merge_args(cfg, args)
    if (cfg.resume and cfg.load_from is None
            and find_latest_checkpoint(cfg.work_dir) is None):
        # MMEngine would log "Auto resumed from the latest checkpoint None."
        print_log(
            f'--resume: no checkpoint found in {cfg.work_dir}; starting from '
            'scratch',
            logger='current')
        cfg.resume = False
    runner = tool_utils.build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    main()

"""Test (and evaluate) a checkpoint with MMPretrain's Runner and nfnet_mm's
modules.

MMPretrain's options; what differs (the checkpoint checked before anything
runs, strict EMA loading, ``--non-strict``, ``--tta`` on EMA weights, quiet
output) is listed in README.md, "Training and testing tools". Example::

    python tools/test.py CONFIG work_dirs/NAME/epoch_10.pth --out preds.pkl
"""
import tool_utils  # isort:skip (first: its warning filters)

import argparse
import sys
from copy import deepcopy
from typing import List, Optional

import mmengine
import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.evaluator import DumpResults
from mmengine.registry import DefaultScope
from mmengine.runner import CheckpointLoader
from mmpretrain.registry import MODELS

from nfnet_mm.compat import enable_safe_checkpoints, load_checkpoint_file
from nfnet_mm.utils.checkpoint import (CheckpointError,
                                       CheckpointMismatchError,
                                       check_state_dict, strip_prefix)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line (MMPretrain's options, and ``--non-strict``)."""
    parser = argparse.ArgumentParser(description='Test a model (nfnet_mm)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the metrics file')
    parser.add_argument(
        '--out', help='file to write the results to (.pkl/.json)')
    parser.add_argument(
        '--out-item',
        choices=['metrics', 'pred'],
        help='what --out holds; defaults to the predictions')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, as key=value pairs')
    parser.add_argument('--amp', action='store_true', help='fp16 test')
    parser.add_argument(
        '--show-dir', help='save the visualized predictions here')
    parser.add_argument(
        '--show',
        action='store_true',
        help='display the predictions in a window')
    parser.add_argument(
        '--interval', type=int, default=1, help='visualize every N-th sample')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='display time in seconds')
    parser.add_argument(
        '--no-pin-memory', action='store_true', help='disable pin_memory')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation: '
        '`tta_model`/`tta_pipeline`, else flip-averaged class scores')
    parser.add_argument(
        '--non-strict',
        action='store_true',
        help='accept a checkpoint '
        'whose keys or shapes differ (missing weights keep their init)')
    tool_utils.add_launcher_args(parser)
    args = parser.parse_args(argv)
    if args.out is None and args.out_item is not None:
        parser.error('--out-item needs --out')
    return args


def _flip_tta_pipeline(test_pipeline: list) -> list:
    """The test pipeline with its packing step replaced by a flip/no-flip
    TTA."""
    pipeline = deepcopy(test_pipeline)
    pipeline[-1] = dict(
        type='TestTimeAug',
        transforms=[[
            dict(type='RandomFlip', prob=1.),
            dict(type='RandomFlip', prob=0.)
        ], [test_pipeline[-1]]])
    return pipeline


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line options to the config (``--cfg-options`` first,
    as MMPretrain's tool does: they edit the classifier, not its TTA
    wrapper)."""
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.load_from = args.checkpoint
    if args.amp:
        cfg.test_cfg = cfg.get('test_cfg', None) or ConfigDict()
        cfg.test_cfg.fp16 = True

    if args.show or args.show_dir is not None:
        hooks = cfg.get('default_hooks', None) or {}
        if 'visualization' not in hooks:
            raise ValueError(
                '--show/--show-dir need `default_hooks.visualization = '
                'dict(type="VisualizationHook")` in the config, found none')
        vis = cfg.default_hooks.visualization
        vis.enable = True
        vis.show = args.show
        vis.wait_time = args.wait_time
        vis.out_dir = args.show_dir
        vis.interval = args.interval

    if args.tta:
        if 'tta_model' not in cfg:
            cfg.tta_model = dict(type='mmpretrain.AverageClsScoreTTA')
        if 'tta_pipeline' not in cfg:
            cfg.tta_pipeline = _flip_tta_pipeline(
                cfg.test_dataloader.dataset.pipeline)
        cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline

    hooks = [] if args.non_strict else cfg.get('custom_hooks', None) or []
    for hook in (h for h in hooks if str(h.get('type')).endswith('EMAHook')):
        hook[
            'strict_load'] = True  # else EMA keys that do not fit (--tta)
        # load nothing
    tool_utils.apply_common_args(cfg, args, ('test_dataloader', ))
    logger = (cfg.get('default_hooks', None) or {}).get('logger', None)
    if logger is not None and 'default_hooks.logger.interval' not in (
            args.cfg_options or {}):  # progress also on a short test run
        logger.interval = min(logger.get('interval', 10), 10)
    return cfg


def check_checkpoint(cfg: Config, path: str, strict: bool = True) -> None:
    """Refuse a checkpoint that cannot be tested, before anything runs or is
    written.

    With ``strict``, the model built on the ``meta`` device (shapes only) must
    match the ``state_dict`` and, where present, the ``ema_state_dict`` (keys
    ``module.<name>``; the EMA hook swaps the two sets and tests the one the
    config says).

    Raises:
        CheckpointError: The file is no checkpoint, is unsafe or does not
            match.
    """
    checkpoint = (CheckpointLoader.load_checkpoint(path, 'cpu') if '://'
                  in path else load_checkpoint_file(path, map_location='meta')
                  )  # shapes only
    state = checkpoint.get('state_dict', checkpoint) if isinstance(
        checkpoint, dict) else None
    if not isinstance(state, dict):
        raise CheckpointMismatchError(f'{path!r} holds no state dict')
    if not strict:
        return
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        try:  # builders edit their cfg: a copy each time
            with torch.device('meta'):
                model = MODELS.build(deepcopy(cfg.model))
        except (RuntimeError, NotImplementedError):  # e.g. .item() while built
            model = MODELS.build(deepcopy(cfg.model))
    model = getattr(model, 'module',
                    model)  # the classifier inside a TTA model
    expected = model.state_dict()
    # MMEngine's loader strips DDP's prefix (its default revise_keys).
    check_state_dict(expected, strip_prefix(state), repr(path))
    ema = checkpoint.get('ema_state_dict', None)
    if ema is not None:
        check_state_dict({
            f'module.{k}': v
            for k, v in expected.items()
        }, {
            k: v
            for k, v in ema.items() if k != 'steps'
        }, f'{path!r} (its ema_state_dict)')


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    enable_safe_checkpoints()
    cfg = merge_args(Config.fromfile(args.config), args)
    check_checkpoint(cfg, args.checkpoint, strict=not args.non_strict)
    runner = tool_utils.build_runner(cfg)
    if args.out and args.out_item in ('pred', None):
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    metrics = runner.test()
    if args.out and args.out_item == 'metrics':
        mmengine.dump(metrics, args.out)
    return metrics


if __name__ == '__main__':
    try:
        main()
    except CheckpointError as err:
        sys.exit(f'tools/test.py: error: {err}')

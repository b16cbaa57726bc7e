"""Test (and evaluate) a checkpoint with MMPretrain's Runner and nfnet_mm's modules.

The options follow MMPretrain's ``tools/test.py``; ``nfnet_mm`` is imported first, so
the checkpoint is loaded with its safe ``weights_only`` path.

Example::

    python tools/test.py CONFIG work_dirs/NAME/epoch_10.pth --out preds.pkl
"""
import argparse
import os
import os.path as osp
from copy import deepcopy
from typing import List, Optional

import nfnet_mm  # noqa: F401  (registers modules, safe loading)
import mmengine
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.evaluator import DumpResults
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line (MMPretrain's options)."""
    parser = argparse.ArgumentParser(description='Test a model (nfnet_mm)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the metrics file')
    parser.add_argument('--out', help='file to write the results to (.pkl/.json)')
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
        '--show-dir', help='directory to save the visualized predictions to')
    parser.add_argument(
        '--show', action='store_true', help='display the predictions in a window')
    parser.add_argument(
        '--interval', type=int, default=1, help='visualize every N-th sample')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='display time in seconds')
    parser.add_argument(
        '--no-pin-memory', action='store_true', help='disable pin_memory')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation: the config\'s `tta_model`/`tta_pipeline`, or '
        'else horizontal-flip averaging of the class scores')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if args.out is None and args.out_item is not None:
        parser.error('--out-item needs --out')
    return args


def _flip_tta_pipeline(test_pipeline: list) -> list:
    """The test pipeline with its packing step replaced by a flip/no-flip TTA."""
    pipeline = deepcopy(test_pipeline)
    pipeline[-1] = dict(
        type='TestTimeAug',
        transforms=[[dict(type='RandomFlip', prob=1.),
                     dict(type='RandomFlip', prob=0.)], [test_pipeline[-1]]])
    return pipeline


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line options to the config."""
    cfg.setdefault('default_scope', 'mmpretrain')
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
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

    if cfg.get('test_dataloader', None) is not None:
        loader = ConfigDict(
            pin_memory=not args.no_pin_memory,
            collate_fn=dict(type='default_collate'))
        loader.update(cfg.test_dataloader)
        if args.no_pin_memory:
            loader.pin_memory = False
        cfg.test_dataloader = loader

    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)  # honours the config's custom_imports
    cfg = merge_args(cfg, args)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    if args.out and args.out_item in ('pred', None):
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    metrics = runner.test()
    if args.out and args.out_item == 'metrics':
        mmengine.dump(metrics, args.out)
    return metrics


if __name__ == '__main__':
    main()

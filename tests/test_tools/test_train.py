"""tools/train.py and tools/test.py: option handling, --amp, and a CLI run with
--resume."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import tool_utils as cli
from helpers import REPO as ROOT
from helpers import TINY_CLASSIFIER_CFG, load_tool, write_image_folder
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS

train_tool = load_tool('train')
test_tool = load_tool('test')


@OPTIM_WRAPPERS.register_module(force=True)
class _FoundationTestAmpWrapper(AmpOptimWrapper):
    pass


@OPTIM_WRAPPERS.register_module(force=True)
class _FoundationTestWrapper(OptimWrapper):
    amp_variant = '_FoundationTestAmpWrapper'


@OPTIM_WRAPPERS.register_module(force=True)
class _FoundationTestNoAmpWrapper(OptimWrapper):
    """A custom wrapper that names no AMP variant."""


def _cfg(**optim_wrapper):
    return Config(
        dict(
            optim_wrapper=dict(
                optimizer=dict(type='SGD', lr=0.1), **optim_wrapper)))


@pytest.mark.parametrize(
    'given, expected',
    [
        (dict(type='OptimWrapper'), 'AmpOptimWrapper'),
        (dict(), 'AmpOptimWrapper'),  # MMEngine's default wrapper type
        (dict(type='AmpOptimWrapper'), 'AmpOptimWrapper'),
        (dict(type='_FoundationTestWrapper'), '_FoundationTestAmpWrapper'),
    ])
def test_amp_switches_to_the_wrappers_own_variant(given, expected):
    cfg = train_tool.enable_amp(_cfg(**given))
    assert cfg.optim_wrapper.type == expected
    # the wrapper's own default loss scale applies (none under bf16 for ours)
    assert 'loss_scale' not in cfg.optim_wrapper
    assert cfg.optim_wrapper.optimizer.lr == 0.1


def test_amp_keeps_a_given_loss_scale():
    cfg = train_tool.enable_amp(_cfg(type='OptimWrapper', loss_scale=512.))
    assert cfg.optim_wrapper.loss_scale == 512.


def test_amp_refuses_a_custom_wrapper_it_cannot_switch():
    cfg = _cfg(type='_FoundationTestNoAmpWrapper', clip_grad=dict(max_norm=1.))
    with pytest.raises(
            ValueError, match='_FoundationTestNoAmpWrapper') as info:
        train_tool.enable_amp(cfg)
    assert 'OptimWrapper' in str(info.value)  # lists what can be switched
    assert cfg.optim_wrapper.type == '_FoundationTestNoAmpWrapper'  # untouched


def test_amp_refuses_an_unknown_type_and_a_missing_wrapper():
    with pytest.raises(
            ValueError,
            match=(r"'NoSuchWrapper'; types --amp can switch: "
                   r".*'AGCOptimWrapper'")):
        train_tool.enable_amp(_cfg(type='NoSuchWrapper'))
    with pytest.raises(ValueError, match='optim_wrapper'):
        train_tool.enable_amp(Config(dict()))


def test_merge_args_amp_after_cfg_options_and_resume_modes():
    base = dict(
        optim_wrapper=dict(
            type='OptimWrapper', optimizer=dict(type='SGD', lr=1)),
        train_dataloader=dict(batch_size=2, num_workers=0),
        custom_imports=dict(imports=['my_project']))
    args = train_tool.parse_args([
        'cfg.py', '--amp', '--resume', '--cfg-options',
        'optim_wrapper.type=_FoundationTestWrapper'
    ])
    assert args.resume == 'auto'
    cfg = train_tool.merge_args(Config(base), args)
    assert cfg.optim_wrapper.type == '_FoundationTestAmpWrapper'
    assert cfg.resume is True and cfg.load_from is None
    # the dumped config runs again with any tool, with the checkpoint opt-in
    assert cfg.custom_imports.imports == [
        'my_project', 'nfnet_mm', 'nfnet_mm.compat.safe_checkpoints'
    ]
    assert cfg.work_dir == osp.join('./work_dirs', 'cfg')
    assert cfg.train_dataloader.persistent_workers is False  # num_workers=0
    # --cfg-options come first: the loader defaults follow num_workers set
    # there
    cfg = train_tool.merge_args(
        Config(
            dict(
                base,
                train_dataloader=dict(num_workers=2,
                                      persistent_workers=True))),
        train_tool.parse_args(
            ['cfg.py', '--cfg-options', 'train_dataloader.num_workers=0']))
    assert cfg.train_dataloader.persistent_workers is False

    args = train_tool.parse_args(
        ['cfg.py', '--resume', 'a/b.pth', '--work-dir', 'w'])
    cfg = train_tool.merge_args(Config(base), args)
    assert cfg.resume is True and cfg.load_from == 'a/b.pth'
    assert cfg.work_dir == 'w'
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # no --amp, no change


@pytest.mark.parametrize('accelerator', [False, True])
def test_pin_memory_only_with_an_accelerator(monkeypatch, accelerator):
    monkeypatch.setattr(cli, '_has_accelerator', lambda: accelerator)
    cfg = Config(
        dict(
            train_dataloader=dict(num_workers=2),
            val_dataloader=dict(num_workers=0, pin_memory=True)))
    cfg = train_tool.merge_args(cfg, train_tool.parse_args(['cfg.py']))
    assert cfg.train_dataloader.pin_memory is accelerator
    # even where the config asks
    assert cfg.val_dataloader.pin_memory is accelerator
    assert cfg.train_dataloader.persistent_workers is True
    assert cfg.val_dataloader.persistent_workers is False  # no workers
    cfg = train_tool.merge_args(
        Config(dict(train_dataloader=dict())),
        train_tool.parse_args(['cfg.py', '--no-pin-memory']))
    assert cfg.train_dataloader.pin_memory is False


def test_test_tool_options():
    cfg = Config(
        dict(
            model=dict(type='ImageClassifier'),
            default_hooks=dict(logger=dict(type='LoggerHook', interval=100)),
            test_dataloader=dict(
                dataset=dict(pipeline=[
                    dict(type='LoadImageFromFile'),
                    dict(type='PackInputs')
                ]))))
    args = test_tool.parse_args(['cfg.py', 'ckpt.pth', '--tta'])
    cfg = test_tool.merge_args(cfg, args)
    assert cfg.default_hooks.logger.interval == 10  # progress on a short test
    assert cfg.load_from == 'ckpt.pth'
    assert cfg.model.type == 'mmpretrain.AverageClsScoreTTA'
    assert cfg.model.module.type == 'ImageClassifier'
    assert cfg.test_dataloader.dataset.pipeline[-1].type == 'TestTimeAug'
    args = test_tool.parse_args(
        ['c.py', 'k.pth', '--cfg-options', 'default_hooks.logger.interval=3'])
    cfg = test_tool.merge_args(
        Config(dict(default_hooks=dict(logger=dict()))), args)
    assert cfg.default_hooks.logger.interval == 3  # the user's choice wins
    args = test_tool.parse_args([
        'c.py', 'k.pth', '--tta', '--cfg-options',
        'default_hooks.logger.interval=50', 'model.head.topk=1'
    ])
    cfg = test_tool.merge_args(
        Config(
            dict(
                default_hooks=dict(logger=dict()),
                model=dict(type='ImageClassifier', head={}),
                test_dataloader=dict(
                    dataset=dict(pipeline=[dict(type='PackInputs')])))), args)
    assert cfg.default_hooks.logger.interval == 50
    # not the TTA
    assert cfg.model.module.head.topk == 1 and 'head' not in cfg.model
    with pytest.raises(ValueError, match='VisualizationHook'):
        test_tool.merge_args(
            Config(dict(test_dataloader=None)),
            test_tool.parse_args(['c.py', 'k.pth', '--show-dir', 'v']))


def _train_cli(*extra, cwd):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run(
        [sys.executable,
         osp.join(ROOT, 'tools', 'train.py'), *extra],
        capture_output=True,
        text=True,
        cwd=str(cwd),
        env=env,
        timeout=300)


@pytest.mark.slow
def test_train_cli_runs_and_resumes(tmp_path):
    data_root = write_image_folder(tmp_path / 'data')
    cfg = tmp_path / 'tiny.py'
    cfg.write_text(TINY_CLASSIFIER_CFG.format(data_root=str(data_root)))
    work_dir = tmp_path / 'work'

    # --resume on an empty work dir: says so and starts from scratch
    first = _train_cli(
        str(cfg), '--work-dir', str(work_dir), '--resume', cwd=tmp_path)
    log = first.stdout + first.stderr
    assert first.returncode == 0, log[-3000:]
    assert f'no checkpoint found in {work_dir}; starting from scratch' in log
    assert 'Auto resumed' not in log
    assert ('MultiScaleDeformableAttention' not in log
            and 'FileClient' not in log)
    assert (work_dir / 'last_checkpoint').read_text().endswith('epoch_1.pth')

    second = _train_cli(
        str(cfg),
        '--work-dir',
        str(work_dir),
        '--resume',
        '--cfg-options',
        'train_cfg.max_epochs=2',
        cwd=tmp_path)
    log = second.stdout + second.stderr
    assert second.returncode == 0, log[-3000:]
    assert 'resumed epoch: 1' in log
    assert (work_dir / 'last_checkpoint').read_text().endswith('epoch_2.pth')

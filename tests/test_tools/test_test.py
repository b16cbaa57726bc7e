"""tools/test.py: a bad checkpoint ends in one error, nothing written; TTA on
EMA."""
import json
import os
import os.path as osp
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import REPO as ROOT
from helpers import RunsCommand, TinyRunnerNet, load_tool
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

import nfnet_mm  # noqa: F401  (registers NFNet)

TOOLS = osp.join(ROOT, 'tools')
DEMO = osp.join(ROOT, 'configs', 'fashion_mnist',
                'nfnet-demo_1xb128_fashion-mnist.py')
FASHION_MNIST = '/usr/share/datasets/fashion-mnist'


def _demo_state_dict(**arch):
    cfg = Config.fromfile(DEMO)
    cfg.model.backbone.arch.update(arch)
    cfg.model.head.in_channels = cfg.model.backbone.arch.widths[-1]
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg.model).state_dict()


def _write(path, data):
    with open(path, 'wb') as f:
        f.write(data)
    return path


def _truncated(path):
    torch.save({'state_dict': _demo_state_dict()}, path)
    with open(path, 'rb') as f:
        data = f.read()
    return _write(path, data[:len(data) // 3])


def _evil(path):
    torch.save({'state_dict': {}, 'meta': RunsCommand(path + '.pwned')}, path)
    return path


def _other_arch(path):
    torch.save(
        {
            'state_dict':
            _demo_state_dict(
                stem_widths=[16, 16, 16, 32], widths=[32, 64, 96, 160])
        }, path)
    return path


def _without_head_bias(path):
    state = _demo_state_dict()
    del state['head.fc.bias']
    torch.save({'state_dict': state}, path)
    return path


# name, how to make the file, what the one error line must say
BAD_CHECKPOINTS = [
    ('random-bytes', lambda p: _write(p, os.urandom(4096)),
     'neither a zip archive nor a pickle'),
    ('renamed-text', lambda p: _write(p, b'epoch 1: loss 0.3\n' * 20),
     'neither a zip archive nor a pickle'),
    ('empty', lambda p: _write(p, b''), 'is empty'),
    ('truncated', _truncated, 'damaged or truncated zip archive'),
    ('forbidden-pickle', _evil, "allow-list: ['posix.system']"),
    ('other-arch', _other_arch,
     'with another shape: backbone.stem.conv1.weight [16, 3, 3, 3] '
     '(model: [8, 3, 3, 3])'),
    ('missing-head-bias', _without_head_bias, '1 missing: head.fc.bias.'),
    ('no-such-file', lambda p: p, 'does not exist'),
]

# Runs tools/test.py as __main__ for each case in one interpreter (one import
# of the stack) and reports what the process would exit with: SystemExit(str)
# exits with status 1 after printing the string to stderr.
DRIVER = textwrap.dedent('''
    import json, runpy, sys
    for argv in json.loads(sys.argv[1]):
        sys.argv = [sys.argv[0]] + argv
        try:
            runpy.run_path({tool!r}, run_name='__main__')
            print(json.dumps(dict(code=0)))
        except SystemExit as exit:
            print(json.dumps(dict(code=exit.code)))
''')


@pytest.mark.slow
def test_bad_checkpoints_end_in_one_error_and_write_nothing(tmp_path):
    cases = []
    for name, make, _ in BAD_CHECKPOINTS:
        ckpt = make(str(tmp_path / f'{name}.pth'))
        cases.append([
            DEMO, ckpt, '--work-dir',
            str(tmp_path / f'work_{name}'), '--out',
            str(tmp_path / f'out_{name}.pkl')
        ])
    proc = subprocess.run(
        [
            sys.executable, '-c',
            DRIVER.format(tool=osp.join(TOOLS, 'test.py')),
            json.dumps(cases)
        ],
        capture_output=True,
        text=True,
        timeout=600,
        # as `python tools/test.py` does, the tool's folder is on the path
        env=dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=TOOLS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [
        json.loads(line) for line in proc.stdout.splitlines()
        if line.startswith('{')
    ]
    assert len(results) == len(
        BAD_CHECKPOINTS), proc.stdout + proc.stderr[-3000:]
    for (name, _, says), case, result in zip(BAD_CHECKPOINTS, cases, results):
        message = result['code']
        assert isinstance(message, str), (name, result)  # exit status 1
        assert message.startswith('tools/test.py: error: '), (name, message)
        assert says in message and case[1] in message, (name, message)
        assert '\n' not in message and message.isprintable(), (name, message)
        assert 'weights_only=False' not in message
        assert not osp.exists(case[3]) and not osp.exists(case[5]), name
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.pwned')]
    # the CLI itself: exit status 1 and the one line on stderr, no traceback
    real = subprocess.run(
        [sys.executable, osp.join(TOOLS, 'test.py'), *cases[0]],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert real.returncode == 1
    assert real.stderr.strip() == results[0]['code'], real.stderr[-2000:]
    assert 'Traceback' not in real.stdout + real.stderr


def _tool(name, *args):
    proc = subprocess.run(
        [sys.executable, osp.join(TOOLS, f'{name}.py'), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    return log


def _top1(log):
    return float(
        re.findall(r'Epoch\(test\).*accuracy/top1: ([\d.]+)', log)[-1])


@pytest.mark.slow
@pytest.mark.skipif(not osp.isdir(FASHION_MNIST), reason='needs Fashion-MNIST')
def test_tta_tests_the_ema_weights_of_a_demo_run(tmp_path):
    """100 iterations of the demo with its EMA hook, then test with and without
    TTA."""
    work = str(tmp_path / 'work')
    short = [
        'train_cfg.max_epochs=1', 'train_dataloader.batch_size=32',
        'train_dataloader.dataset.indices=3200',
        'val_dataloader.dataset.indices=500', 'optim_wrapper.optimizer.lr=0.1',
        'train_dataloader.dataset.mix_prob=0.0'
    ]
    subset = ['test_dataloader.dataset.indices=1000']
    train = _tool('train', DEMO, '--work-dir', work, '--cfg-options', *short)
    ckpt = osp.join(work, 'epoch_1.pth')
    assert 'ema_state_dict' in torch.load(ckpt, weights_only=False)
    plain = _tool('test', DEMO, ckpt, '--work-dir', work, '--cfg-options',
                  *subset)
    tta = _tool('test', DEMO, ckpt, '--tta', '--work-dir', work,
                '--cfg-options', *subset)
    assert ('Start testing on EMA model.' in plain
            and 'Start testing on EMA model.' in tta)
    assert _top1(plain) > 50 and _top1(tta) > 50  # chance is 10
    assert abs(_top1(plain) - _top1(tta)) < 5
    # MMEngine's own EMA model wraps the TTA model, so the checkpoint's EMA
    # keys do not fit it: that fails (it tested the EMA copy's random start
    # before), naming keys
    proc = subprocess.run([
        sys.executable,
        osp.join(TOOLS, 'test.py'), DEMO, ckpt, '--tta', '--work-dir', work,
        '--cfg-options', *subset,
        'custom_hooks.0.ema_type=ExponentialMovingAverage'
    ],
                          capture_output=True,
                          text=True,
                          timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert (proc.returncode != 0
            and 'Epoch(test)' not in proc.stdout + proc.stderr)
    assert 'module.module.backbone.stem' in proc.stderr, proc.stderr[-3000:]
    # quiet: no warning a user cannot act on
    for noise in ('MultiScaleDeformableAttention',
                  "'pin_memory' argument is set",
                  '"FileClient" will be deprecated',
                  '"HardDiskBackend" is the alias',
                  'pkg_resources is deprecated', 'Warning'):
        assert noise not in train + plain + tta, noise


def test_ema_of_a_tta_model_keys_weights_as_checkpoints_do():
    """The root cause of TTA testing random weights: the EMA copy's keys."""
    from mmpretrain.models import AverageClsScoreTTA

    from nfnet_mm.models import NFNetEMA
    model = TinyRunnerNet()
    keys = {'steps'} | {f'module.{k}' for k in model.state_dict()}
    saved = NFNetEMA(
        model).state_dict()  # what EMAHook saves as ema_state_dict
    assert set(saved) == keys
    ema = NFNetEMA(
        AverageClsScoreTTA(module=model))  # what the hook builds with --tta
    assert set(ema.state_dict()) == keys
    ema.load_state_dict(saved, strict=True)


def test_strict_check_covers_ema_weights_and_non_strict_opts_out(tmp_path):
    from nfnet_mm.utils.checkpoint import CheckpointMismatchError
    tool = load_tool('test')
    state = _demo_state_dict()
    ema = {
        'steps': torch.tensor(3),
        **{
            f'module.{k}': v
            for k, v in state.items()
        }
    }
    cfg = tool.merge_args(
        Config.fromfile(DEMO), tool.parse_args([DEMO, 'x.pth', '--tta']))
    good = str(tmp_path / 'good.pth')
    # DDP's prefix is stripped as MMEngine's loader does; a TTA model is
    # unwrapped
    torch.save(
        {
            'state_dict': {
                f'module.{k}': v
                for k, v in state.items()
            },
            'ema_state_dict': ema
        }, good)
    tool.check_checkpoint(cfg, good)
    del ema['module.head.fc.weight']
    bad_ema = str(tmp_path / 'bad_ema.pth')
    torch.save({'state_dict': state, 'ema_state_dict': ema}, bad_ema)
    with pytest.raises(
            CheckpointMismatchError,
            match=r"\(its ema_state_dict\).*1 missing: module.head.fc.weight"):
        tool.check_checkpoint(cfg, bad_ema)
    partial = _without_head_bias(str(tmp_path / 'partial.pth'))
    with pytest.raises(CheckpointMismatchError, match='head.fc.bias'):
        tool.check_checkpoint(cfg, partial)
    tool.check_checkpoint(cfg, partial, strict=False)  # --non-strict
    assert tool.parse_args([DEMO, partial, '--non-strict']).non_strict
    # the EMA hook loads strictly, unless --non-strict
    ema_hooks = [h for h in cfg.custom_hooks if h.type == 'EMAHook']
    assert len(ema_hooks) == 1 and ema_hooks[0].strict_load is True
    lax = tool.merge_args(
        Config.fromfile(DEMO), tool.parse_args([DEMO, 'x.pth',
                                                '--non-strict']))
    assert 'strict_load' not in lax.custom_hooks[0]


@pytest.mark.slow
@pytest.mark.skipif(not osp.isdir(FASHION_MNIST), reason='needs Fashion-MNIST')
def test_non_strict_cli_tests_a_partial_checkpoint_and_names_what_is_missing(
        tmp_path):
    partial = _without_head_bias(str(tmp_path / 'partial.pth'))
    log = _tool('test', DEMO, partial, '--non-strict', '--work-dir',
                str(tmp_path / 'w'), '--cfg-options',
                'test_dataloader.dataset.indices=100')
    assert 0 <= _top1(log) <= 100
    assert re.search(r'missing keys in source state_dict: head\.fc\.bias',
                     log), log[-3000:]


def test_strict_check_builds_models_that_need_real_tensors(tmp_path):
    """MMPretrain's ConvNeXt reads a tensor while built (meta tensors cannot):
    the key check then builds on the CPU instead of failing."""
    model = dict(
        type='ImageClassifier',
        neck=dict(type='GlobalAveragePooling'),
        backbone=dict(
            type='ConvNeXt',
            drop_path_rate=0.1,
            arch=dict(depths=[1, 1, 1, 1], channels=[8, 16, 32, 64])),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=64))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        state = MODELS.build(dict(model)).state_dict()
    path = str(tmp_path / 'convnext.pth')
    torch.save({'state_dict': state}, path)
    cfg = Config(dict(model=model, default_scope='mmpretrain'))
    load_tool('test').check_checkpoint(cfg, path)
    del state['head.fc.bias']
    torch.save({'state_dict': state}, path)
    with pytest.raises(Exception, match='1 missing: head.fc.bias'):
        load_tool('test').check_checkpoint(cfg, path)


def test_strict_check_reads_urls_through_mmengine(tmp_path, monkeypatch):
    """A URL (MMPretrain's tool accepts them) goes through MMEngine's
    loader."""
    from mmengine.runner import CheckpointLoader
    tool = load_tool('test')
    state = _demo_state_dict()
    seen = []

    def load(path, map_location):
        seen.append(path)
        return {'state_dict': state}

    monkeypatch.setattr(CheckpointLoader, 'load_checkpoint',
                        staticmethod(load))
    url = 'https://example.com/nfnet-demo.pth'
    tool.check_checkpoint(
        tool.merge_args(Config.fromfile(DEMO), tool.parse_args([DEMO, url])),
        url)
    assert seen == [url]

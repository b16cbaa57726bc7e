"""MMPretrain's own tools, unchanged, train, resume and test our demo config.

The scripts shipped in MMPretrain's wheel (``mmpretrain/.mim/tools``) know
nothing of this project: the demo config's ``custom_imports`` alone must
register our modules and opt in to weights-only checkpoint loading with an
allow-list (``nfnet_mm.compat.safe_checkpoints``). Without that opt-in,
resuming or testing fails on torch >= 2.6 with "Unsupported global:
mmengine.logging.history_buffer.HistoryBuffer". (A ``--cfg-options
custom_imports.imports=...`` cannot drop the opt-in: MMEngine imports the
config's ``custom_imports`` when it reads the file, before the options
merge; a child config without it shows the failure.)
"""
import os
import os.path as osp
import re
import subprocess
import sys

import mmpretrain
import pytest
from helpers import REPO

#: MMPretrain's own ``tools`` folder, as its wheel ships it.
MIM_TOOLS = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools')
DEMO = osp.join('configs', 'fashion_mnist',
                'nfnet-demo_1xb128_fashion-mnist.py')
FASHION_MNIST = '/usr/share/datasets/fashion-mnist'

#: A short run: a few iterations on a subset of each split.
SHORT = [
    'train_dataloader.batch_size=32',
    'train_dataloader.dataset.dataset.indices=256',
    'train_dataloader.dataset.mix_prob=0.0',
    'val_dataloader.dataset.indices=128',
    'val_dataloader.batch_size=64',
    'test_dataloader.dataset.indices=128',
    'test_dataloader.batch_size=64',
    'optim_wrapper.optimizer.lr=0.1',
    'default_hooks.logger.interval=4',
]
#: What MMEngine's loader says without the opt-in on torch >= 2.6.
UNSUPPORTED = 'Unsupported global'


def _mim_tool(name, *args):
    """Run MMPretrain's ``tools/<name>.py`` from the repository root.

    Args:
        name (str): ``'train'`` or ``'test'``.
        *args (str): The tool's command line.

    Returns:
        tuple[int, str]: The return code and stdout + stderr.
    """
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, osp.join(MIM_TOOLS, f'{name}.py'), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_mmpretrain_tools_train_resume_and_test_the_demo(tmp_path):
    """Train 1 epoch, resume to 2, then test, all with MMPretrain's tools."""
    if not osp.isfile(osp.join(FASHION_MNIST, 'train-images-idx3-ubyte.gz')):
        pytest.skip(f'needs Fashion-MNIST in {FASHION_MNIST}')
    assert osp.isfile(osp.join(MIM_TOOLS, 'train.py')), MIM_TOOLS
    work = str(tmp_path / 'work')

    rc, log = _mim_tool('train', DEMO, '--work-dir', work, '--cfg-options',
                        'train_cfg.max_epochs=1', *SHORT)
    assert rc == 0, log[-3000:]
    assert osp.isfile(osp.join(work, 'epoch_1.pth')), log[-3000:]
    assert UNSUPPORTED not in log

    rc, log = _mim_tool('train', DEMO, '--work-dir', work, '--resume',
                        '--cfg-options', 'train_cfg.max_epochs=2', *SHORT)
    assert UNSUPPORTED not in log, log[-3000:]
    assert rc == 0, log[-3000:]
    assert 'Auto resumed from the latest checkpoint' in log, log[-3000:]
    assert 'resumed epoch: 1' in log, log[-3000:]
    ckpt = osp.join(work, 'epoch_2.pth')
    assert osp.isfile(ckpt), log[-3000:]

    rc, log = _mim_tool('test', DEMO, ckpt, '--work-dir', work,
                        '--cfg-options', *SHORT)
    assert UNSUPPORTED not in log, log[-3000:]
    assert rc == 0, log[-3000:]
    top1 = re.findall(r'Epoch\(test\).*accuracy/top1: ([\d.]+)', log)
    assert top1, log[-3000:]
    assert 0 <= float(top1[-1]) <= 100

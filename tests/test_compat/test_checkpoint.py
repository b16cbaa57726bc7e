"""With the opt-in: safe (weights_only) loading, exact resume, atomic saves."""
import argparse
import os
import os.path as osp
import pickle

import pytest
import torch
from helpers import RunsCommand, StopAfterEpoch, make_runner, run_until_stopped
from mmengine.logging import MMLogger
from mmengine.runner import checkpoint as mm_ckpt
from mmengine.runner.checkpoint import _load_checkpoint, find_latest_checkpoint

import nfnet_mm
from nfnet_mm.compat import checkpoint as ckpt
from nfnet_mm.utils import checkpoint as ckpt_utils

# The opt-in, as tools/train.py and tools/test.py do; idempotent.
nfnet_mm.enable_safe_checkpoints()
nfnet_mm.enable_safe_checkpoints()


def _weights(runner):
    return {
        k: v.detach().clone()
        for k, v in runner.model.state_dict().items()
    }


@pytest.mark.slow
def test_resume_is_bitwise_exact(tmp_path):
    straight = make_runner(tmp_path / 'straight')
    straight.train()
    expected = _weights(straight)

    # The same run, killed after epoch 1's checkpoint, then resumed by a fresh
    # Runner.
    killed = make_runner(
        tmp_path / 'resumed', custom_hooks=[StopAfterEpoch(1)])
    run_until_stopped(killed)
    assert killed.epoch == 0  # it never finished epoch 1's bookkeeping
    resumed = make_runner(tmp_path / 'resumed', resume=True)
    resumed.train()

    assert resumed.epoch == 2
    # the LR schedule was restored (milestone after epoch 1: 0.1 -> 0.01)
    lr = resumed.optim_wrapper.optimizer.param_groups[0]['lr']
    assert lr == pytest.approx(0.01)
    got = _weights(resumed)
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), name
    # and it differs from a run that ignores the momentum buffers (state
    # matters)
    assert not torch.equal(
        _weights(killed)['conv.weight'], expected['conv.weight'])


@pytest.mark.slow
def test_real_checkpoint_needs_only_allow_listed_globals(tmp_path):
    runner = make_runner(
        tmp_path, max_epochs=1, custom_hooks=[dict(type='EMAHook')])
    runner.train()
    path = osp.join(tmp_path, 'epoch_1.pth')
    allowed = {name for _, name in ckpt.SAFE_CHECKPOINT_GLOBALS}
    # what torch alone (without our allow-list) would refuse in this file
    registered = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        needed = set(
            torch.serialization.get_unsafe_globals_in_checkpoint(path))
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path, weights_only=True)
    finally:
        torch.serialization.add_safe_globals(registered)
    assert needed, 'a Runner checkpoint should need more than torch defaults'
    assert needed <= allowed, needed - allowed
    loaded = ckpt.load_checkpoint_file(path)
    assert {
        'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers',
        'ema_state_dict'
    } <= set(loaded)
    # and MMEngine's own loader (what Runner.resume / load_checkpoint call)
    # works
    assert _load_checkpoint(path, map_location='cpu')['meta']['epoch'] == 1


class _ReachesThroughGetattr:
    """Asks the unpickler for getattr(<allowed class>, <non-method
    attribute>)."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return (getattr, (HistoryBuffer, '__init__'))


def test_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / 'pwned'
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'meta': RunsCommand(marker)}, path)

    for load in (ckpt.load_checkpoint_file, _load_checkpoint):
        with pytest.raises(ckpt_utils.UnsafeCheckpointError) as info:
            load(path)
        message = str(info.value)
        assert 'posix.system' in message  # names the offending global
        assert path in message  # and the file
        # says how to allow a trusted file
        assert 'add_safe_globals' in message
        assert 'weights_only=False' not in message
        assert not marker.exists()
    # the error is still an UnpicklingError for callers that catch that
    assert issubclass(ckpt_utils.UnsafeCheckpointError, pickle.UnpicklingError)


def test_allow_listed_getattr_only_returns_history_buffer_methods(tmp_path):
    path = str(tmp_path / 'getattr.pth')
    torch.save({'x': _ReachesThroughGetattr()}, path)
    with pytest.raises(ckpt_utils.UnsafeCheckpointError, match='__init__'):
        _load_checkpoint(path)


class _Killed(BaseException):
    """Stands for the process dying (not an ``Exception``, like
    KeyboardInterrupt)."""


def _kill_mid_serialization(monkeypatch):
    """torch.save writes part of the file, then the process dies."""

    def save(obj, f, *args, **kwargs):
        f.write(b'\x00' * 4096)
        f.flush()
        raise _Killed('killed mid-write')

    monkeypatch.setattr(torch, 'save', save)


def _kill_before_rename(monkeypatch):
    """All bytes are written, the process dies before anything is renamed.

    MMEngine's own in-place write would already have replaced the file here.
    """

    def replace(*args, **kwargs):
        raise _Killed('killed before the rename')

    monkeypatch.setattr(os, 'replace', replace)


@pytest.mark.slow
@pytest.mark.parametrize('kill',
                         [_kill_mid_serialization, _kill_before_rename])
def test_killed_save_leaves_previous_checkpoint_and_pointer_intact(
        tmp_path, monkeypatch, kill):
    work_dir = tmp_path / 'run'
    first = make_runner(work_dir, max_epochs=1)
    first.train()
    ckpt1 = osp.join(work_dir, 'epoch_1.pth')
    before = open(ckpt1, 'rb').read()
    assert find_latest_checkpoint(str(work_dir)) == ckpt1

    # Epoch 2 of a resumed run; its save dies, over a file that exists.
    second = make_runner(work_dir, max_epochs=2, resume=True)
    torch.save({'stale': torch.zeros(1)}, osp.join(work_dir, 'epoch_2.pth'))
    stale = open(osp.join(work_dir, 'epoch_2.pth'), 'rb').read()
    kill(monkeypatch)
    with pytest.raises(_Killed):
        second.train()
    monkeypatch.undo()

    assert open(ckpt1, 'rb').read() == before
    assert open(osp.join(work_dir, 'epoch_2.pth'), 'rb').read() == stale
    assert find_latest_checkpoint(str(work_dir)) == ckpt1
    assert not [f for f in os.listdir(work_dir) if f.endswith('.tmp')]
    # resume picks the intact checkpoint and finishes
    third = make_runner(work_dir, max_epochs=2, resume=True)
    third.train()
    assert third.epoch == 2
    assert find_latest_checkpoint(str(work_dir)) == osp.join(
        work_dir, 'epoch_2.pth')
    resumed = ckpt.load_checkpoint_file(osp.join(work_dir, 'epoch_2.pth'))
    assert resumed['meta']['epoch'] == 2


def test_killed_pointer_write_keeps_old_pointer(tmp_path, monkeypatch):
    from mmengine.hooks import checkpoint_hook
    pointer = tmp_path / 'last_checkpoint'
    pointer.write_text('/old/epoch_1.pth')

    _kill_before_rename(monkeypatch)
    with pytest.raises(_Killed):
        with checkpoint_hook.open(str(pointer), 'w') as f:
            f.write('/new/epoch_2.pth')
    monkeypatch.undo()
    assert pointer.read_text() == '/old/epoch_1.pth'
    assert os.listdir(tmp_path) == ['last_checkpoint']


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / 'f.bin'
    target.write_bytes(b'old')
    with ckpt_utils.atomic_write(target) as f:
        f.write(b'new contents')
    assert target.read_bytes() == b'new contents'
    assert os.listdir(tmp_path) == ['f.bin']
    with pytest.raises(ValueError, match="'a'"):
        with ckpt_utils.atomic_write(target, 'a'):
            pass


def test_env_escape_hatch_keeps_torch_meaning(tmp_path, monkeypatch):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 loads a trusted file, as plain
    MMEngine does."""
    path = str(tmp_path / 'trusted.pth')
    torch.save(
        {
            'state_dict': {
                'w': torch.ones(2)
            },
            'meta': {
                'args': argparse.Namespace(lr=0.1)
            }
        }, path)
    with pytest.raises(
            ckpt_utils.UnsafeCheckpointError, match='argparse.Namespace'):
        _load_checkpoint(path)
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    assert _load_checkpoint(path)['meta']['args'].lr == 0.1
    assert ckpt.load_checkpoint_file(
        path)['meta']['args'] == argparse.Namespace(lr=0.1)


def test_mmengine_log_keeps_its_loader_name(tmp_path, capsys):
    path = str(tmp_path / 'w.pth')
    torch.save({'state_dict': {}}, path)
    assert mm_ckpt.CheckpointLoader._get_checkpoint_loader(
        path) is ckpt.load_from_local
    logger = MMLogger.get_instance('ckpt_log_name')
    mm_ckpt.CheckpointLoader.load_checkpoint(path, logger=logger)
    log = capsys.readouterr().out
    assert f'Loads checkpoint by local backend from path: {path}' in log


def test_atomic_saves_write_through_a_symlink(tmp_path):
    """MMEngine's save (as Runner calls it) and the pointer keep a link a
    link."""
    from mmengine.hooks import checkpoint_hook
    from mmengine.runner import runner as mm_runner
    target, link = tmp_path / 'real.pth', tmp_path / 'latest.pth'
    target.write_bytes(b'old')
    link.symlink_to(target)
    mm_runner.save_checkpoint({'state_dict': {
        'w': torch.arange(3.)
    }}, str(link))
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert torch.equal(
        ckpt.load_checkpoint_file(target)['state_dict']['w'], torch.arange(3.))
    pointer, pointed = tmp_path / 'last_checkpoint', tmp_path / 'pointer.txt'
    pointed.write_text('old')
    pointer.symlink_to(pointed)
    with checkpoint_hook.open(str(pointer), 'w') as f:
        f.write('new')
    assert pointer.is_symlink() and pointed.read_text() == 'new'
    assert sorted(os.listdir(tmp_path)) == sorted(
        ['real.pth', 'latest.pth', 'last_checkpoint', 'pointer.txt'])


@pytest.mark.parametrize(
    'content, says', [
        (os.urandom(4096), 'neither a zip archive nor a pickle'),
        (b'hello, this is a text file\n',
         'neither a zip archive nor a pickle'),
        (b'', 'is empty'),
        (b'\x1f\x8b\x08\x00' + os.urandom(64),
         'neither a zip archive nor a pickle'),
        (b'\x80\x02' + os.urandom(64), 'damaged or truncated pickle'),
    ],
    ids=['random', 'text', 'empty', 'gzip', 'pickle-junk'])
def test_a_file_that_is_no_checkpoint_is_named_not_called_unsafe(
        tmp_path, content, says):
    path = str(tmp_path / 'model.pth')
    with open(path, 'wb') as f:
        f.write(content)
    for load in (ckpt.load_checkpoint_file, _load_checkpoint):
        with pytest.raises(ckpt_utils.NotACheckpointError) as info:
            load(path)
        message = str(info.value)
        assert says in message and path in message
        assert message.isprintable() and 'weights_only=False' not in message


def test_a_truncated_or_missing_checkpoint_is_named(tmp_path):
    path = str(tmp_path / 'cut.pth')
    torch.save({'state_dict': {'w': torch.zeros(1000)}}, path)
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(
            ckpt_utils.NotACheckpointError, match='damaged or truncated zip'):
        ckpt.load_checkpoint_file(path)
    with pytest.raises(
            ckpt_utils.NotACheckpointError,
            match='missing.pth.*does not exist'):
        ckpt.load_checkpoint_file(tmp_path / 'missing.pth')


def test_a_sound_checkpoint_keeps_torchs_own_error(tmp_path):
    """An error that is not about the file (here a bad map_location) is not
    reported as 'not a checkpoint'."""
    path = str(tmp_path / 'ok.pth')
    torch.save({'state_dict': {'w': torch.zeros(3)}}, path)
    with pytest.raises(RuntimeError, match='bogus') as info:
        ckpt.load_checkpoint_file(path, map_location='bogus')
    assert not isinstance(info.value, ckpt_utils.CheckpointError)
    loaded = ckpt.load_checkpoint_file(path, map_location='meta')
    assert loaded['state_dict']['w'].shape == (3, )


def test_opt_in_is_a_no_op_on_an_mmengine_newer_than_targeted(monkeypatch):
    from mmengine.runner import checkpoint as mm_ckpt
    loader = mm_ckpt.CheckpointLoader._schemes['']
    savers = (mm_ckpt.save_checkpoint, torch.serialization.get_safe_globals())
    monkeypatch.setattr(ckpt, '_enabled', False)
    monkeypatch.setattr(ckpt.mmengine, '__version__', '0.10.8')
    ckpt.enable_safe_checkpoints()
    assert mm_ckpt.CheckpointLoader._schemes[''] is loader
    assert (mm_ckpt.save_checkpoint,
            torch.serialization.get_safe_globals()) == savers

"""Safe (weights_only) loading, exact resume and atomic saves of MMEngine checkpoints."""
import os
import os.path as osp
import pickle

import pytest
import torch
from mmengine.runner.checkpoint import _load_checkpoint, find_latest_checkpoint

import nfnet_mm  # noqa: F401  (installs the checkpoint fixes)
from nfnet_mm.utils import checkpoint as ckpt
from foundation_helpers import StopAfterEpoch, make_runner, run_until_stopped


def _weights(runner):
    return {k: v.detach().clone() for k, v in runner.model.state_dict().items()}


def test_resume_is_bitwise_exact(tmp_path):
    straight = make_runner(tmp_path / 'straight')
    straight.train()
    expected = _weights(straight)

    # The same run, killed after epoch 1's checkpoint, then resumed by a fresh Runner.
    killed = make_runner(tmp_path / 'resumed', custom_hooks=[StopAfterEpoch(1)])
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
    # and it differs from a run that ignores the momentum buffers (state matters)
    assert not torch.equal(_weights(killed)['conv.weight'], expected['conv.weight'])


def test_real_checkpoint_needs_only_allow_listed_globals(tmp_path):
    runner = make_runner(tmp_path, max_epochs=1,
                         custom_hooks=[dict(type='EMAHook')])
    runner.train()
    path = osp.join(tmp_path, 'epoch_1.pth')
    allowed = {name for _, name in ckpt.SAFE_CHECKPOINT_GLOBALS}
    # what torch alone (without our allow-list) would refuse in this file
    registered = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path, weights_only=True)
    finally:
        torch.serialization.add_safe_globals(registered)
    assert needed, 'a Runner checkpoint should need more than torch defaults'
    assert needed <= allowed, needed - allowed
    loaded = ckpt.safe_torch_load(path)
    assert {'meta', 'state_dict', 'message_hub', 'optimizer',
            'param_schedulers', 'ema_state_dict'} <= set(loaded)
    # and MMEngine's own loader (what Runner.resume / load_checkpoint call) works
    assert _load_checkpoint(path, map_location='cpu')['meta']['epoch'] == 1


class _RunsCommand:
    """A pickled object that would run a shell command when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


class _ReachesThroughGetattr:
    """Asks the unpickler for getattr(<allowed class>, <non-method attribute>)."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return (getattr, (HistoryBuffer, '__init__'))


def test_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / 'pwned'
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'meta': _RunsCommand(marker)}, path)

    for load in (ckpt.safe_torch_load, _load_checkpoint):
        with pytest.raises(ckpt.UnsafeCheckpointError) as info:
            load(path)
        message = str(info.value)
        assert 'system' in message  # names the offending global
        assert 'add_safe_globals' in message  # says how to allow a trusted file
        assert 'weights_only=False' not in message
        assert not marker.exists()
    # the error is still an UnpicklingError for callers that catch that
    assert issubclass(ckpt.UnsafeCheckpointError, pickle.UnpicklingError)


def test_allow_listed_getattr_only_returns_history_buffer_methods(tmp_path):
    path = str(tmp_path / 'getattr.pth')
    torch.save({'x': _ReachesThroughGetattr()}, path)
    with pytest.raises(ckpt.UnsafeCheckpointError, match='__init__'):
        _load_checkpoint(path)


class _Killed(BaseException):
    """Stands for the process dying (not an ``Exception``, like KeyboardInterrupt)."""


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


@pytest.mark.parametrize('kill', [_kill_mid_serialization, _kill_before_rename])
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
    assert find_latest_checkpoint(str(work_dir)) == osp.join(work_dir, 'epoch_2.pth')
    assert ckpt.safe_torch_load(osp.join(work_dir, 'epoch_2.pth'))['meta']['epoch'] == 2


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
    with ckpt.atomic_write(target) as f:
        f.write(b'new contents')
    assert target.read_bytes() == b'new contents'
    assert os.listdir(tmp_path) == ['f.bin']
    with pytest.raises(ValueError, match="'a'"):
        with ckpt.atomic_write(target, 'a'):
            pass

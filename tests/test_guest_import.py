"""``import nfnet_mm`` registers modules and changes nothing else in its
host."""
import subprocess
import sys
import textwrap

import pytest

# In a fresh interpreter: import the host (torch, MMEngine, MMPretrain, mmcv,
# numpy), record every module-level and class-level binding, import nfnet_mm,
# compare.
SCRIPT = textwrap.dedent('''
    import sys
    import torch, torch.onnx, torch.serialization
    import mmengine.hooks.checkpoint_hook, mmengine.runner
    import mmengine.runner.checkpoint
    import mmpretrain.apis, mmpretrain.datasets
    import mmpretrain.engine, mmpretrain.models
    from mmengine.hooks import checkpoint_hook
    from mmengine.runner import checkpoint as mm_ckpt, runner as mm_runner

    def named():
        """The bindings issue 12 names, each looked up where its users look."""
        return {
            'CheckpointLoader schemes':
                dict(mm_ckpt.CheckpointLoader._schemes),
            'CheckpointLoader.load_checkpoint':
                mm_ckpt.CheckpointLoader.__dict__['load_checkpoint'],
            'mmengine.runner.checkpoint.save_checkpoint':
                mm_ckpt.save_checkpoint,
            'mmengine.runner.save_checkpoint': mmengine.runner.save_checkpoint,
            'mmengine.runner.runner.save_checkpoint':
                mm_runner.save_checkpoint,
            'checkpoint_hook.open': vars(checkpoint_hook).get('open'),
            'torch.load': torch.load,
            'torch.onnx.export': torch.onnx.export,
            'torch safe globals': set(torch.serialization.get_safe_globals()),
        }

    def bindings():
        """Every (module or class, name) -> object of the host's loaded
        modules."""
        out = {}
        for name, mod in list(sys.modules.items()):
            if mod is None or name.split('.')[0] not in (
                    'torch', 'mmengine', 'mmpretrain', 'mmcv', 'numpy'):
                continue
            for key, value in list(vars(mod).items()):
                out[(name, key)] = value
                if isinstance(value, type) and value.__module__ == name:
                    for attr, member in list(vars(value).items()):
                        out[(name, key, attr)] = member
        return out

    named_before, before = named(), bindings()
    import nfnet_mm
    named_after, after = named(), bindings()
    assert 'mmpretrain.models.backbones' in sys.modules  # the host was loaded
    for what, value in named_before.items():
        same = (value == named_after[what] if isinstance(value, (dict, set))
                else value is named_after[what])
        print('NAMED', what, 'same' if same else 'CHANGED')
    changed = [
        k for k, v in before.items() if k in after and after[k] is not v]
    print('BINDINGS', len(before), 'CHANGED', changed[:20])
''')


@pytest.mark.slow
def test_import_changes_no_host_binding():
    proc = subprocess.run([sys.executable, '-c', SCRIPT],
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    named = [line for line in lines if line.startswith('NAMED')]
    assert len(named) == 9, proc.stdout
    assert all(line.endswith(' same') for line in named), proc.stdout
    sweep = next(line for line in lines if line.startswith('BINDINGS'))
    assert int(sweep.split()[1]) > 10000, sweep  # the sweep saw the host
    assert sweep.endswith('CHANGED []'), sweep

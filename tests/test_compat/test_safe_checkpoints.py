"""nfnet_mm used from another MMPretrain project through ``custom_imports``."""
import os
import subprocess
import sys
import textwrap

import pytest
from helpers import write_image_folder

# Run in a fresh interpreter that never imports nfnet_mm itself: only the
# config's custom_imports can register our modules (GrayToRGB) and opt in to
# the checkpoint fixes. With the opt-in, a second Runner resumes the first
# one's checkpoint (MMEngine's own loader, torch's weights-only default).
SCRIPT = textwrap.dedent('''
    import sys
    from mmengine.config import Config
    from mmengine.runner import Runner
    assert 'nfnet_mm' not in sys.modules
    cfg = Config.fromfile(sys.argv[1])
    assert 'nfnet_mm' in sys.modules
    runner = Runner.from_cfg(cfg)
    runner.train()
    from mmengine.runner import runner as runner_module
    print('ITERS', runner.iter)
    print('SAVER', runner_module.save_checkpoint.__module__)
    if sys.argv[2] == 'resume':
        cfg.merge_from_dict(dict(resume=True, train_cfg=dict(max_epochs=2),
                                 experiment_name='resumed'))
        resumed = Runner.from_cfg(cfg)
        resumed.train()
        print('RESUMED', resumed.iter)
''')


@pytest.mark.parametrize(
    'imports, saver',
    [
        (['nfnet_mm'
          ], 'mmengine.runner.checkpoint'),  # a guest: MMEngine's own saver
        (['nfnet_mm', 'nfnet_mm.compat.safe_checkpoints'
          ], 'nfnet_mm.compat.checkpoint'),
    ])
@pytest.mark.slow
def test_mmpretrain_config_with_custom_imports_trains(tmp_path, imports,
                                                      saver):
    data_root = write_image_folder(tmp_path / 'data')
    cfg_dir = tmp_path / 'other_project'
    cfg_dir.mkdir()
    (cfg_dir / 'cfg.py').write_text(
        textwrap.dedent(f'''
        _base_ = 'mmpretrain::resnet/resnet18_8xb32_in1k.py'
        custom_imports = dict(imports={imports!r}, allow_failed_imports=False)
        work_dir = {str(tmp_path / 'work')!r}
        model = dict(
            backbone=dict(stem_channels=8, base_channels=8),
            head=dict(num_classes=2, in_channels=64, topk=(1, )))
        data_preprocessor = dict(num_classes=2)
        train_dataloader = dict(
            batch_size=4, num_workers=0, persistent_workers=False,
            dataset=dict(
                _delete_=True, type='CustomDataset',
                data_root={str(data_root)!r},
                pipeline=[
                    dict(type='LoadImageFromFile', color_type='grayscale'),
                    dict(type='GrayToRGB'),
                    dict(type='PackInputs'),
                ]))
        train_cfg = dict(max_epochs=1)
        val_dataloader = None
        val_cfg = None
        val_evaluator = None
        test_dataloader = None
        test_cfg = None
        test_evaluator = None
    '''))
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([
        sys.executable, '-c', SCRIPT,
        str(cfg_dir / 'cfg.py'), 'resume' if len(imports) > 1 else 'no'
    ],
                          capture_output=True,
                          text=True,
                          cwd=str(tmp_path),
                          env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'ITERS 1' in proc.stdout
    assert f'SAVER {saver}' in proc.stdout
    assert (tmp_path / 'work' / 'epoch_1.pth').is_file()
    if len(imports) > 1:
        # one iteration an epoch, resumed at 1
        assert 'RESUMED 2' in proc.stdout
        assert 'resumed epoch: 1' in proc.stdout + proc.stderr

"""MMDeploy 1.3.1 end to end (onnxruntime) via tools/deploy/mmdeploy.py, and
the TorchScript exporter chosen only where the export happens."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO, write_deploy_config

pytest.importorskip('onnxruntime')
if importlib.util.find_spec('mmdeploy') is None:
    pytest.skip(
        'mmdeploy is not installed (pip install mmdeploy==1.3.1 --no-deps '
        '&& pip install aenum prettytable; see docs/deploy.md)',
        allow_module_level=True)

STATIC = osp.join(REPO, 'configs/deploy/classification_onnxruntime_static.py')
DYNAMIC = osp.join(REPO,
                   'configs/deploy/classification_onnxruntime_dynamic.py')


def test_deploy_configs():
    from mmengine.config import Config
    static, dynamic = Config.fromfile(STATIC), Config.fromfile(DYNAMIC)
    for cfg in (static, dynamic):
        assert cfg.codebase_config == dict(
            type='mmpretrain', task='Classification')
        assert cfg.backend_config.type == 'onnxruntime'
        assert cfg.custom_imports.imports == ['nfnet_mm']
    assert 'dynamic_axes' not in static.onnx_config
    assert dynamic.onnx_config.dynamic_axes == {
        'input': {
            0: 'batch'
        },
        'output': {
            0: 'batch'
        }
    }
    from mmdeploy.utils import Codebase
    assert Codebase.get('mmpretrain')  # the codebase name MMDeploy knows


@pytest.mark.slow
def test_mmdeploy_onnxruntime_end_to_end(tmp_path):
    cfg = write_deploy_config(tmp_path)  # the tiny arch
    work = tmp_path / 'work'
    out = subprocess.run([
        sys.executable,
        osp.join(REPO, 'tools/deploy/mmdeploy.py'), DYNAMIC,
        str(cfg), 'none', '--work-dir',
        str(work), '--dump-info'
    ],
                         cwd=REPO,
                         capture_output=True,
                         text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout[out.stdout.index('{'):])
    # MMDeploy's onnxruntime backend model == our PyTorch model (not folded)
    assert report['ok'] and report['max_abs_diff'] <= 1e-4, report
    assert report['labels'][0] == report['labels'][1], report
    for name in ('end2end.onnx', 'deploy.json', 'pipeline.json'):
        assert (work / name).exists(), name
    import onnx
    import onnxruntime as ort
    graph = onnx.load(str(work / 'end2end.onnx')).graph
    ops = {n.op_type for n in graph.node}
    # folded WS
    assert 'Conv' in ops and 'Sqrt' not in ops and 'ReduceL2' not in ops
    sess = ort.InferenceSession(
        str(work / 'end2end.onnx'), providers=['CPUExecutionProvider'])
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal(
            (batch, 3, 64, 64)).astype(np.float32)
        scores = sess.run(None, {'input': x})[0]
        assert scores.shape == (batch, 10)
        # MMDeploy's classification rewrite returns softmax scores
        np.testing.assert_allclose(scores.sum(1), 1, atol=1e-5)


@pytest.mark.slow
def test_import_with_the_old_env_request_patches_nothing(tmp_path):
    # NFNET_MM_ONNX_EXPORTER once patched torch.onnx.export at import
    code = ('import torch; before = torch.onnx.export; import nfnet_mm, '
            'nfnet_mm.deploy; print(torch.onnx.export is before)')
    out = subprocess.run([sys.executable, '-c', code],
                         cwd=str(tmp_path),
                         env=dict(
                             os.environ, NFNET_MM_ONNX_EXPORTER='torchscript'),
                         capture_output=True,
                         text=True,
                         timeout=300)
    assert out.stdout.split()[-1:] == ['True'], out.stderr[-2000:]

"""nfnet_mm.deploy and tools/deploy/export_onnx.py on a small NFNet: fold,
export, onnxruntime."""
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import REPO, TINY_ARCH, run_tool, write_deploy_config

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

from nfnet_mm import deploy  # noqa: E402

TOOL = 'tools/deploy/export_onnx.py'


def real_image(folder):
    """The shipped demo image (a Fashion-MNIST test image)."""
    return osp.join(REPO, 'demo', 'demo.png')


@pytest.fixture(scope='module')
def exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp('onnx')
    cfg = write_deploy_config(folder)
    img = real_image(folder)
    reports = {}
    for name, fold in (('folded', True), ('unfolded', False)):
        reports[name] = deploy.export_and_check(
            cfg,
            'none',
            osp.join(str(folder), f'{name}.onnx'),
            fold=fold,
            img=img,
            dynamic_batch=fold)
    return reports


def test_onnxruntime_matches_pytorch(exports):
    for rep in exports.values():
        assert rep['input_shape'] == [1, 3, 64, 64]
        assert rep['max_abs_diff'] <= 1e-4
    assert exports['folded']['max_abs_diff_batch2'] <= 1e-4


def test_folded_graph_has_no_weight_standardisation(exports):
    import onnx
    folded, unfolded = exports['folded']['ops'], exports['unfolded']['ops']
    num_convs = 4 + 4 * 4 + 3 + 1  # stem, 4 per block, 3 shortcuts, final
    assert folded['Conv'] == unfolded['Conv'] == num_convs
    # WS = mean over the fan-in, the centred weight's norm (ReduceL2, or a
    # Sqrt of a variance), its guard max(norm, sqrt(eps)) (Clip/Max)
    for op in ('ReduceL2', 'Sqrt', 'Clip', 'Max', 'Reciprocal', 'Pow'):
        assert folded.get(op, 0) == 0, op
    assert (unfolded.get('ReduceL2', 0) + unfolded.get('Sqrt', 0) >= num_convs)
    assert unfolded.get('Clip', 0) + unfolded.get('Max', 0) >= num_convs
    # the only ReduceMean left is the SE squeeze (one per block)
    assert folded.get('ReduceMean', 0) == sum(TINY_ARCH['depths'])
    assert unfolded['ReduceMean'] >= folded.get('ReduceMean', 0) + num_convs
    assert exports['folded']['num_nodes'] < exports['unfolded']['num_nodes']
    # every conv of the folded graph reads its weight straight from an
    # initializer
    graph = onnx.load(exports['folded']['onnx']).graph
    inits = {t.name for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == 'Conv']
    assert all(n.input[1] in inits for n in convs)
    graph = onnx.load(exports['unfolded']['onnx']).graph
    inits = {t.name for t in graph.initializer}
    assert not any(n.input[1] in inits
                   for n in graph.node if n.op_type == 'Conv')


@pytest.mark.slow
def test_cli_json_and_failure_exit(tmp_path, monkeypatch, capsys):
    cfg = write_deploy_config(tmp_path)
    img = real_image(tmp_path)
    out = str(tmp_path / 'm.onnx')
    args = [
        cfg, 'none', '--out', out, '--opset', '13', '--shape', '32', '32',
        '--json',
        str(tmp_path / 'r.json')
    ]
    if img:
        args += ['--img', img]
    assert run_tool(TOOL, *args) == 0
    printed = capsys.readouterr().out
    assert 'max abs difference' in printed and 'Conv: 24' in printed
    report = json.loads((tmp_path / 'r.json').read_text())
    assert report['input_shape'] == [1, 3, 32, 32]
    assert report['opset'] == 13

    # a graph that does not reproduce the model must fail the check
    real_export = deploy.export_onnx

    def export_perturbed(model, inputs, out, **kwargs):
        with torch.no_grad():
            model.head.fc.bias.add_(1e-2)
        real_export(model, inputs, out, **kwargs)

    monkeypatch.setattr(deploy, 'export_onnx', export_perturbed)
    assert run_tool(TOOL, *args) == 1
    assert 'more than the allowed 0.0001' in capsys.readouterr().err
    assert not osp.exists(out)  # the graph that failed the check is not kept


def test_preprocess_uses_pipeline_and_normalisation(tmp_path):
    model = deploy.build_classifier(write_deploy_config(tmp_path))
    bgr = (10, 100, 200)
    img = np.empty((30, 50, 3), np.uint8)
    img[:] = bgr
    inputs = deploy.preprocess(model, img)
    assert inputs.shape == (1, 3, 64, 64)  # ResizeEdge 72 + CenterCrop 64
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    rgb = bgr[::-1]
    for c in range(3):
        torch.testing.assert_close(
            inputs[0, c],
            torch.full((64, 64), (rgb[c] - mean[c]) / std[c]),
            atol=1e-3,
            rtol=0)


@pytest.mark.slow
def test_cli_reads_training_checkpoints_and_names_a_bad_file(tmp_path):
    """A checkpoint as MMEngine's Runner writes it (a message hub with history
    buffers) loads weights-only; a text file is one error naming it."""
    from mmengine.config import Config
    from mmengine.logging import HistoryBuffer
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    cfg = write_deploy_config(tmp_path)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        state = MODELS.build(Config.fromfile(cfg).model).state_dict()
    good, text = str(tmp_path / 'epoch_1.pth'), str(tmp_path / 'notes.pth')
    torch.save(
        dict(
            state_dict=state,
            message_hub=dict(log_scalars=dict(
                loss=HistoryBuffer([0.5], [1])))), good)
    with open(text, 'w') as f:
        f.write('epoch 1: loss 0.5\n')
    img = real_image(tmp_path)
    runs = {}
    for ckpt in (good, text):
        runs[ckpt] = subprocess.run(
            [
                sys.executable,
                osp.join(REPO, TOOL), cfg, ckpt, '--out',
                str(tmp_path / 'm.onnx'), '--shape', '32', '32'
            ] + (['--img', img] if img else []),
            capture_output=True,
            text=True,
            timeout=600)
    assert runs[good].returncode == 0, runs[good].stderr[-3000:]
    err = runs[text].stderr.strip().splitlines()[-1]
    assert runs[text].returncode == 1 and err.startswith(
        'ERROR: ') and text in err
    assert 'text file' in err and 'Traceback' not in runs[text].stderr

"""Tests of lab/reproduce.py (the Figure 2 reproduction).

The ``--quick`` sweep runs through ``main()`` so that the tool cannot rot: its
JSON must carry every field docs/reproduction.md uses, the plots must be
written and a second call must resume (skip every finished run) instead of
training again.
"""
import importlib
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn

from lab.reproduction.agc import (ARCH, FULL, QUICK, build_model, plan_runs,
                                  run_sweep)
from nfnet_mm.datasets.fashion_mnist import DEFAULT_FASHION_MNIST_ROOT
from nfnet_mm.models.layers.ws_conv import ScaledWSConv2d

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HAVE_DATA = osp.isfile(
    osp.join(DEFAULT_FASHION_MNIST_ROOT, 't10k-labels-idx1-ubyte.gz'))
RUN_KEYS = {
    'name', 'arm', 'batch_size', 'lr', 'lr_scale', 'clipping', 'clip_head',
    'epochs', 'top1', 'diverged', 'seconds', 'train_loss'
}


def _tool():
    return importlib.import_module('lab.reproduce')


def test_full_plan_covers_the_issue():
    runs = plan_runs(dict(FULL))
    sizes = sorted({r['batch_size'] for r in runs})
    assert len(sizes) >= 3 and sizes[0] == 256 and sizes[-1] == 4096
    for b in sizes:  # every arm at every batch size, at the paper's lr
        base = [
            r for r in runs if r['batch_size'] == b and r['lr_scale'] == 1
            and not r['clip_head']
        ]
        assert {r['arm'] for r in base} == {'bn', 'nf', 'nf_agc'}
        for r in base:
            assert r['lr'] == pytest.approx(0.1 * b / 256)
    lambdas = {
        r['clipping']
        for r in runs if r['arm'] == 'nf_agc' and r['batch_size'] == 4096
        and r['lr_scale'] == 1 and not r['clip_head']
    }
    assert len(lambdas) >= 3
    assert [r['arm'] for r in runs if r['clip_head']] == ['nf_agc']
    assert all((r['clipping'] is None) == (r['arm'] != 'nf_agc') for r in runs)
    assert len({r['name'] for r in runs}) == len(runs)


def test_bn_arm_differs_only_in_normaliser():
    nf, bn = build_model('nf'), build_model('bn')
    ws = [n for n, m in nf.named_modules() if isinstance(m, ScaledWSConv2d)]
    assert ws and not any(isinstance(m, ScaledWSConv2d) for m in bn.modules())
    bns = [n for n, m in bn.named_modules() if isinstance(m, nn.BatchNorm2d)]
    # one BN after each former WS conv, same name, same conv geometry
    assert bns == [f'{n}.1' for n in ws]
    for name in ws:
        a, b = nf.get_submodule(name), bn.get_submodule(name)[0]
        assert (b.weight.shape, b.stride, b.padding,
                b.groups) == (a.weight.shape, a.stride, a.padding, a.groups)
        assert b.bias is None
    # gamma and beta were the WS convs' input scales: gone with them;
    # alpha is 1
    assert any(m.input_scale != 1. for m in nf.modules()
               if isinstance(m, ScaledWSConv2d))
    blocks = [m for m in bn.backbone.modules() if hasattr(m, 'skip_gain')]
    assert blocks and all(block.alpha == 1. for block in blocks)
    assert bn.backbone.gamma == 1.
    assert nf.backbone.stages[0][0].alpha == ARCH['alpha']
    assert nf.backbone.gamma > 1.
    # the rest is shared: SE, skip gains, head
    names = {
        n
        for n, _ in nf.named_parameters()
        if '.conv' not in n and 'final_conv' not in n
    }
    assert names <= {n for n, _ in bn.named_parameters()}
    x = torch.randn(8, 1, 14, 14)
    assert bn.extract_feat(x)[0].shape == nf.extract_feat(x)[0].shape == (8,
                                                                          64)


def test_other_setup_in_out_dir_is_refused(tmp_path):
    (tmp_path / 'results.json').write_text(
        json.dumps(dict(setup=dict(QUICK, epochs=7), arch=ARCH, runs=[])))
    with pytest.raises(ValueError, match='another setup'):
        run_sweep(
            dict(QUICK, data_root=DEFAULT_FASHION_MNIST_ROOT, threads=1),
            str(tmp_path))


def test_resume_with_other_threads_or_data_root(tmp_path, capsys):
    setup = dict(QUICK, data_root='/elsewhere', threads=2)
    runs = [dict(name=run['name']) for run in plan_runs(setup)]
    (tmp_path / 'results.json').write_text(
        json.dumps(dict(setup=setup, arch=ARCH, runs=runs)))
    run_sweep(
        dict(QUICK, data_root=DEFAULT_FASHION_MNIST_ROOT, threads=1),
        str(tmp_path))
    assert capsys.readouterr().out.count('done, skipped') == len(runs)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_DATA, reason='Fashion-MNIST not installed')
def test_quick_sweep_json_plots_and_resume(tmp_path, capsys):
    tool = _tool()
    tool.main(['--quick', '--out', str(tmp_path), '--threads', '1'])
    data = json.loads((tmp_path / 'results.json').read_text())
    runs = data['runs']
    assert [r['name']
            for r in runs] == [r['name'] for r in plan_runs(data['setup'])]
    assert {r['arm'] for r in runs} == {'bn', 'nf', 'nf_agc'}
    for r in runs:
        assert set(r) == RUN_KEYS
        assert r['epochs'] == QUICK['epochs'] and 0. <= r['top1'] <= 100.
        assert isinstance(r['diverged'], bool) and r['seconds'] > 0
        # 512 training images, one epoch: one loss per iteration
        assert len(
            r['train_loss']) == -(-QUICK['train_size'] // r['batch_size'])
        assert r['diverged'] or all(v is not None for v in r['train_loss'])
    for name in ('top1_vs_batch_size.png', 'top1_vs_clipping.png',
                 f"train_loss_batch_{QUICK['batch_sizes'][-1]}.png"):
        assert (tmp_path / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    capsys.readouterr()
    tool.main(['--quick', '--out', str(tmp_path), '--threads', '1'])
    out = capsys.readouterr().out
    assert out.count('done, skipped') == len(runs)
    assert json.loads((tmp_path / 'results.json').read_text()) == data

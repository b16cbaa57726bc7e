"""Tests of lab/reproduce.py (Figure 2, the final-layer ablation, A.4's SAM).

The ``--quick`` sweep runs through ``main()`` so that the tool cannot rot: its
JSON must carry every field docs/reproduction.md uses, the plots must be
written and a second call must resume (skip every finished run).
"""
import importlib
import json

import pytest
import torch
import torch.nn as nn

from lab.reproduction.sam import (ASCENTS, OtherBatchSAMClassifier,
                                  sam_optim_wrapper)
from lab.reproduction.sweep import (FULL, NET, QUICK, best_clipping,
                                    build_model, plan_runs, run_sweep,
                                    shard_runs)
from nfnet_mm.datasets.fashion_mnist import DEFAULT_FASHION_MNIST_ROOT
from nfnet_mm.engine.optimizers import SAMOptimWrapper
from nfnet_mm.models.layers.ws_conv import ScaledWSConv2d

HAVE_DATA = __import__('os').path.isfile(
    f'{DEFAULT_FASHION_MNIST_ROOT}/t10k-labels-idx1-ubyte.gz')
RUN_KEYS = {
    'name', 'arm', 'net', 'batch_size', 'lr', 'clipping', 'clip_head',
    'ascent', 'seed', 'epochs', 'top1', 'diverged', 'step_time_ratio',
    'seconds', 'top1_per_epoch', 'train_loss'
}


def _seeds(runs, **match):
    return sorted(r['seed'] for r in runs
                  if all(r[k] == v for k, v in match.items()))


def test_full_plan_covers_the_issue():
    runs = plan_runs(dict(FULL))
    seeds = [0, 1, 2]
    assert len({r['name'] for r in runs}) == len(runs)
    for b in (256, 1024, 4096):
        for arm in ('bn', 'nf'):
            assert _seeds(runs, arm=arm, batch_size=b) == seeds
        best = _seeds(
            runs, arm='nf_agc', batch_size=b, clipping='best', clip_head=False)
        grid = [
            r for r in runs if r['arm'] == 'nf_agc' and r['batch_size'] == b
            and isinstance(r['clipping'], float)
        ]
        if b == 256:
            assert best == seeds and not grid
        else:  # seed 0 at the best lambda is the grid's run
            assert best == [1, 2]
            assert sorted(r['clipping']
                          for r in grid) == [0.01, 0.02, 0.04, 0.08, 0.16]
        for r in runs:
            if r['batch_size'] == b:
                assert r['lr'] == pytest.approx(0.1 * b / 256)
    assert _seeds(
        runs, clip_head=True, batch_size=4096, clipping='best') == seeds
    assert len([r for r in runs if r['clip_head']]) == 3
    for ascent in ASCENTS:
        assert _seeds(runs, arm='sam', ascent=ascent, batch_size=256) == seeds
    assert all((r['clipping'] is None) == (r['arm'] != 'nf_agc') for r in runs)


def test_shards_split_the_plan_and_put_the_grid_first():
    plan = [r['name'] for r in plan_runs(FULL)]
    shards = [shard_runs(FULL, (k, 2)) for k in range(2)]
    names = [r['name'] for shard in shards for r in shard]
    assert sorted(names) == sorted(plan)
    for shard in shards:
        kinds = [r['clipping'] == 'best' for r in shard]
        assert kinds == sorted(kinds)  # every run waiting on the grid last
    assert shard_runs(FULL, (0, 2)) == shards[0]  # the same on every call


def test_best_clipping_waits_for_the_whole_grid():
    grid = [r for r in plan_runs(QUICK) if isinstance(r['clipping'], float)]
    at = [r for r in grid if r['batch_size'] == 64]
    done = [dict(at[0], top1=50.)]
    assert best_clipping(done, QUICK, 64) == (None, [at[1]['name']])
    done.append(dict(at[1], top1=60.))
    assert best_clipping(done, QUICK, 64) == (at[1]['clipping'], [])
    done[0]['top1'] = 60.  # a tie: the larger lambda
    assert best_clipping(done, QUICK, 64)[0] == max(r['clipping'] for r in at)
    # batch 32 is not gridded: the nearest gridded batch (64) decides
    assert best_clipping(done, QUICK, 32)[0] == max(r['clipping'] for r in at)


def test_bn_twin_differs_only_in_normaliser():
    nf, bn = build_model('nf'), build_model('bn')
    assert type(nf.backbone).__name__ == 'NFResNet'
    assert sum(p.numel()
               for p in nf.parameters()) == sum(p.numel()
                                                for p in bn.parameters())
    ws = [n for n, m in nf.named_modules() if isinstance(m, ScaledWSConv2d)]
    assert ws and not any(isinstance(m, ScaledWSConv2d) for m in bn.modules())
    assert [n for n, m in bn.named_modules()
            if isinstance(m, nn.BatchNorm2d)] == [f'{n}.1' for n in ws]
    for name in ws:
        a, (conv, norm) = nf.get_submodule(name), bn.get_submodule(name)
        assert (conv.weight.shape, conv.stride, conv.padding,
                conv.groups) == (a.weight.shape, a.stride, a.padding, a.groups)
        assert conv.bias is None
        # the BN scale starts at the gain: 0 for the last conv of a block
        assert torch.equal(norm.weight, a.gain)
    assert any(not nf.get_submodule(n).gain.any() for n in ws)
    blocks = [m for m in bn.backbone.modules() if hasattr(m, 'alpha')]
    assert blocks and all(block.alpha == 1. for block in blocks)
    assert nf.backbone.stages[0][0].alpha == 0.2
    x = torch.randn(4, 1, 14, 14)
    assert bn.extract_feat(x)[0].shape == nf.extract_feat(x)[0].shape == (
        4, NET['arch']['widths'][-1])


def test_sam_arms_build_the_ascent_asked():
    opt = dict(type='SGD', lr=0.1)
    assert sam_optim_wrapper('none', opt)['type'] == 'AGCOptimWrapper'
    fractions = {
        a: sam_optim_wrapper(a, opt)['ascent_fraction']
        for a in ASCENTS[1:]
    }
    assert fractions == {'full': 1., '0.2': 0.2, 'other': 0.2}
    with pytest.raises(ValueError, match='ascent'):
        sam_optim_wrapper('half', opt)
    assert isinstance(build_model('sam', 'other'), OtherBatchSAMClassifier)


def _batch(seed, n=10):
    g = torch.Generator().manual_seed(seed)
    from mmpretrain.structures import DataSample
    return dict(
        inputs=[
            torch.randint(0, 255, (1, 14, 14), generator=g, dtype=torch.uint8)
            for _ in range(n)
        ],
        data_samples=[
            DataSample().set_gt_label(int(torch.randint(10, (), generator=g)))
            for _ in range(n)
        ])


def test_other_batch_ascent_is_on_the_previous_batch():
    torch.manual_seed(0)
    model = build_model('sam', 'other').train()
    wrapper = SAMOptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.), ascent_fraction=0.2)
    seen = []
    ascend = wrapper.ascend
    wrapper.ascend = lambda loss: (seen.append(float(loss)), ascend(loss))[1]

    def expected(batch):  # the loss on the batch's first 2 of 10 samples
        data = model.data_preprocessor(batch, True)
        with torch.no_grad():
            return float(
                model.parse_losses(
                    model._run_forward(
                        dict(
                            inputs=data['inputs'][:2],
                            data_samples=data['data_samples'][:2]),
                        mode='loss'))[0])

    first, second = _batch(1), _batch(2)
    want = [expected(first), expected(first)]  # lr 0: the weights stay
    model.train_step(first, wrapper)  # no previous batch: its own
    model.train_step(second, wrapper)
    assert seen == pytest.approx(want, rel=1e-5)
    assert expected(second) != pytest.approx(want[1], rel=1e-3)


def test_other_setup_in_out_dir_is_refused(tmp_path):
    (tmp_path / 'results.json').write_text(
        json.dumps(dict(setup=dict(QUICK, epochs=7), net=NET, runs=[])))
    with pytest.raises(ValueError, match='another setup'):
        run_sweep(
            dict(QUICK, data_root=DEFAULT_FASHION_MNIST_ROOT, threads=1),
            str(tmp_path))


def test_resume_with_other_threads_or_data_root(tmp_path, capsys):
    setup = dict(QUICK, data_root='/elsewhere', threads=2)
    runs = [dict(name=run['name']) for run in plan_runs(setup)]
    (tmp_path / 'results.json').write_text(
        json.dumps(dict(setup=setup, net=NET, runs=runs)))
    run_sweep(
        dict(QUICK, data_root=DEFAULT_FASHION_MNIST_ROOT, threads=1),
        str(tmp_path))
    assert capsys.readouterr().out.count('done, skipped') == len(runs)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_DATA, reason='Fashion-MNIST not installed')
def test_quick_sweep_json_plots_and_resume(tmp_path, capsys):
    tool = importlib.import_module('lab.reproduce')
    tool.main(['--quick', '--out', str(tmp_path)])
    data = json.loads((tmp_path / 'results.json').read_text())
    runs = data['runs']
    assert [r['name']
            for r in runs] == [r['name'] for r in plan_runs(data['setup'])]
    for r in runs:
        assert set(r) == RUN_KEYS and r['net'] == NET['name']
        assert 0. <= r['top1'] <= 100. and isinstance(r['diverged'], bool)
        assert isinstance(r['clipping'], float) == (r['arm'] == 'nf_agc')
        assert len(r['train_loss']) == r['epochs'] * -(
            -QUICK['train_size'] // r['batch_size']) or r['diverged']
        assert (r['step_time_ratio'] is not None) == (
            r['arm'] == 'sam' and None not in r['train_loss'])
        assert (r['ascent'] in ASCENTS) == (r['arm'] == 'sam')
    ratios = {
        r['ascent']: r['step_time_ratio']
        for r in runs if r['arm'] == 'sam' and r['seed'] == 0
    }
    if ratios['full'] and ratios['none']:
        assert ratios['full'] > ratios['none']  # two passes cost more
    plateau = next(r for r in runs if r['arm'] == 'plateau')
    assert len(plateau['top1_per_epoch']) == QUICK['plateau_epochs']
    assert plateau['top1'] == plateau['top1_per_epoch'][-1]
    for name in ('top1_vs_batch_size.png', 'top1_vs_clipping.png', 'sam.png',
                 'plateau.png'):
        assert (tmp_path / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    capsys.readouterr()
    tool.main(['--quick', '--out', str(tmp_path)])
    out = capsys.readouterr().out
    assert out.count('done, skipped') == len(runs)
    assert '| nf_agc |' in out and '| other |' in out  # the summary tables
    assert json.loads((tmp_path / 'results.json').read_text()) == data

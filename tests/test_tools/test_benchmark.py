"""Tests of tools/analysis_tools/benchmark.py (the ours-vs-timm benchmark).

The CI smoke run (``--quick``) is executed through ``main()`` so that the
script cannot rot: its JSON must carry every field docs/benchmarks.md uses.
"""
import importlib.util
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(ROOT, 'tools', 'analysis_tools', 'benchmark.py')


def _load():
    spec = importlib.util.spec_from_file_location('nfnet_benchmark', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load()


def _agc_available():
    from nfnet_mm.engine.optimizers import agc
    return hasattr(agc, 'AGCOptimWrapper')


@pytest.mark.skipif(not _agc_available(),
                    reason='AGCOptimWrapper not implemented yet')
def test_quick_run_json_and_markdown(tmp_path):
    out, md = tmp_path / 'quick.json', tmp_path / 'quick.md'
    ret = bench.main(['--quick', '--out', str(out), '--md', str(md)])
    res = json.loads(out.read_text())
    assert res['settings']['batch'] == 2 and res['settings']['img_size'] == 32
    assert res['settings']['device'] == 'cpu'
    for mod in ('torch', 'timm', 'mmengine', 'mmpretrain'):
        assert res['env']['versions'][mod] not in ('', 'n/a')
    assert res['env']['device_name']
    # the tiny arch is the same network in timm: identical parameter counts
    assert res['params']['ours'] == res['params']['timm'] > 0
    expected_train = {'ours', 'ours (no AGC)', 'timm', 'timm (no AGC)'}
    assert set(res['train']) == expected_train
    assert set(res['infer']) == {'ours', 'ours (deploy)', 'timm'}
    for section in ('train', 'infer'):
        for name, r in res[section].items():
            assert 'error' not in r, (section, name, r)
            assert len(r['ms_all']) == 3  # --quick: 3 timed steps
            assert r['ms_per_step'] == pytest.approx(
                sorted(r['ms_all'])[1])  # median of 3
            assert r['img_per_s'] == pytest.approx(2 / r['ms_per_step'] * 1e3)
            assert r['peak_mem_mb'] is None  # n/a on CPU
            assert r['mfu'] is None  # no peak FLOP/s for a CPU
            assert r['flops_per_step'] > 0
    # training counts forward + backward: more than inference
    assert res['train']['ours']['flops_per_step'] > \
        res['infer']['ours']['flops_per_step']
    # same network, same FLOPs (convolutions and matmuls)
    assert res['train']['ours']['flops_per_step'] == \
        res['train']['timm']['flops_per_step']
    speed = res['ratios']['train: ours / timm speed']
    assert speed == pytest.approx(res['train']['ours']['img_per_s'] /
                                  res['train']['timm']['img_per_s'])
    for key in ('infer: ours (deploy) / timm speed',
                'train: ours AGC share of step',
                'train: timm AGC share of step'):
        assert key in res['ratios']
    assert ret['ratios'] == res['ratios']
    text = md.read_text()
    assert '| mode | runner | ms/step | img/s | peak MiB | MFU |' in text
    assert res['env']['device_name'] in text
    assert 'torch ' + res['env']['versions']['torch'] in text


def test_bad_arguments_are_named(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(['f9'])
    err = capsys.readouterr().err
    assert "'f9'" in err and 'f0' in err and 'f6' in err
    with pytest.raises(SystemExit):
        bench.parse_args(['f0', '--padding', 'reflect'])
    err = capsys.readouterr().err
    assert 'reflect' in err and 'symmetric' in err
    with pytest.raises(SystemExit):
        bench.parse_args(['{"depths": [1, 1, 1, 1]}'])  # needs --img-size
    assert '--img-size' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(['f0', '--dtype', 'fp16', '--device', 'cpu'])
    assert 'fp16' in capsys.readouterr().err


def test_defaults_follow_the_variant():
    args = bench.parse_args(['F1', '--device', 'cpu'])
    assert args.variant == 'f1' and args.img_size == 224  # F1 train px
    args = bench.parse_args(['--quick'])
    assert (args.batch, args.img_size, args.steps, args.warmup,
            args.dtype) == (2, 32, 3, 2, 'fp32')


def test_timm_counterpart_is_the_same_network():
    # timm's weights, converted by our converter, load strictly into our
    # model and give the same logits: both sides time the same network.
    spec = importlib.util.spec_from_file_location(
        'timm_to_mmpretrain',
        osp.join(ROOT, 'tools', 'model_converters', 'timm_to_mmpretrain.py'))
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    torch.manual_seed(0)
    theirs = bench.build_timm(bench.QUICK_ARCH, num_classes=10).eval()
    ours = bench.build_ours(bench.QUICK_ARCH, act='erf', num_classes=10)
    ours.eval()
    with torch.no_grad():  # non-zero skip gains, so every block matters
        for name, p in theirs.named_parameters():
            if name.endswith('skipinit_gain'):
                p.fill_(0.5)
    ours.load_state_dict(
        conv.convert_timm_state_dict(theirs.state_dict()), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = theirs(x)
        out = bench._ours_forward(ours)(x)
    # WS eps differs (timm: var + 1e-5, ours: max(var * fan_in, 1e-4))
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)
    bad = dict(bench.QUICK_ARCH, stem_widths=[8, 16, 16, 32])
    with pytest.raises(ValueError, match='stem_widths'):
        bench.timm_cfg_from_arch(bad)


def test_flop_count_of_a_linear_layer():
    # forward 2*B*I*O, backward: weight grad 2*B*I*O (the input needs no
    # grad), as written out by hand.
    layer = nn.Linear(8, 4)
    x, y = torch.randn(3, 8), torch.tensor([0, 1, 2])
    flops = bench.count_train_flops(layer, layer, x, y, train=True)
    assert flops == 2 * (2 * 3 * 8 * 4)
    assert bench.count_train_flops(layer, layer, x, y, train=False) == \
        2 * 3 * 8 * 4
    assert layer.weight.grad is None  # counting leaves no gradients behind


def test_interleaving_alternates_and_skips_warmup():
    calls = []

    def make(name):
        return bench.Runner(name, lambda: calls.append(name), nn.Linear(1, 1))

    a, b = make('a'), make('b')
    bench._time_interleaved([a, b], bench.Timer(torch.device('cpu')),
                            warmup=1, steps=3, device=torch.device('cpu'))
    assert calls == ['a', 'b', 'b', 'a', 'a', 'b', 'b', 'a']
    assert len(a.times) == len(b.times) == 3


def test_device_peaks():
    assert bench.device_peak_tflops(torch.device('cpu'), 'bf16') is None
    names = [n for n, _ in bench.PEAK_TFLOPS]
    # the more specific H100 names must match before the plain 'H100'
    assert names.index('H100 PCIe') < names.index('H100')
    assert names.index('H100 NVL') < names.index('H100')


def test_ws_variants_compute_eq1():
    # the what-if runners must time the same function as ScaledWSConv2d
    from nfnet_mm.models.layers.ws_conv import ScaledWSConv2d
    torch.manual_seed(0)
    conv = ScaledWSConv2d(8, 6, 3, groups=2)
    with torch.no_grad():
        conv.gain.uniform_(0.5, 2.)
        conv.weight[0].fill_(0.3)  # a constant filter: the eps guard acts
    w = conv.weight
    mean = w.mean(dim=(1, 2, 3), keepdim=True)
    var = ((w - mean)**2).mean(dim=(1, 2, 3), keepdim=True)
    fan_in = w[0].numel()
    ref = conv.gain.view(-1, 1, 1, 1) * (w - mean) / torch.sqrt(
        torch.clamp(var * fan_in, min=conv.eps))
    torch.testing.assert_close(conv.get_weight(), ref)
    torch.testing.assert_close(bench.WS_VARIANTS['centred'](conv), ref)
    # timm's formulation differs only through the eps
    torch.testing.assert_close(
        bench.WS_VARIANTS['batch_norm'](conv)[1:], ref[1:], rtol=1e-4,
        atol=1e-5)
    model = nn.Sequential(conv)
    bench._swap_ws(model, lambda c: torch.zeros_like(c.weight))
    x = torch.randn(1, 8, 5, 5)
    assert torch.equal(conv(x), conv.bias.view(1, -1, 1, 1).expand(1, 6, 5, 5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.skipif(not _agc_available(),
                    reason='AGCOptimWrapper not implemented yet')
def test_quick_run_cuda_bf16(tmp_path):
    out = tmp_path / 'quick_cuda.json'
    bench.main(['--quick', '--device', 'cuda', '--dtype', 'bf16', '--sam',
                '--batch', '5', '--out', str(out)])
    res = json.loads(out.read_text())
    for section in ('train', 'infer'):
        for name, r in res[section].items():
            assert 'error' not in r, (section, name, r)
            assert r['peak_mem_mb'] > 0
    assert 'train: ours / timm peak mem' in res['ratios']
    assert 'train: ours+SAM0.2 / ours (train_step) step time' in res['ratios']
    if res['settings']['peak_tflops'] is not None:
        assert 0 < res['train']['ours']['mfu'] < 1

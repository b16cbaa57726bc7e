"""The benchmark harness (lab.benchmarks), its command lines and
lab/gpu_report.sh."""
import importlib
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

import pytest
import torch

from lab.benchmarks import harness, measures, report
from nfnet_mm.converters.timm import convert_timm_state_dict
from nfnet_mm.datasets.fashion_mnist import DEFAULT_FASHION_MNIST_ROOT

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
GPU_REPORT = osp.join(ROOT, 'lab', 'gpu_report.sh')


# ------------------------------------------------------------------ harness
def test_paired_ratio_recovers_a_known_ratio_under_load_drift():
    gen = torch.Generator().manual_seed(0)
    # the machine's load multiplies both runners' times by 0.5x-4x, changing
    # between repetitions; each time also has 3% noise of its own
    load = 0.5 + 3.5 * torch.rand(41, generator=gen)
    noise = 1 + 0.03 * torch.randn(2, 41, generator=gen)
    ours = (10. * load * noise[0]).tolist()
    theirs = (13. * load * noise[1]).tolist()
    assert harness.paired_ratio(theirs, ours) == pytest.approx(1.3, rel=0.02)
    # one repetition hit by a hiccup (one runner 10x slower) moves nothing
    theirs[7] *= 10
    assert harness.paired_ratio(theirs, ours) == pytest.approx(1.3, rel=0.02)
    with pytest.raises(ValueError, match='41 and 3'):
        harness.paired_ratio(theirs, ours[:3])


def test_time_interleaved_rotates_skips_warmup_and_isolates_errors():
    calls = []

    def runner(name, fail_at=None, setup=None):

        def step():
            calls.append(name)
            if calls.count(name) == fail_at:
                raise RuntimeError(f'{name} broke\nsecond line')

        return harness.Runner(name, step, setup=setup)

    a = runner('a', setup=lambda: time.sleep(0.2))  # untimed
    b, c = runner('b'), runner('c', fail_at=2)
    harness.time_interleaved([a, b, c],
                             warmup=1,
                             steps=3,
                             device=torch.device('cpu'))
    assert calls == ['a', 'b', 'c', 'b', 'c', 'a', 'a', 'b', 'a', 'b']
    assert c.error == 'RuntimeError: c broke' and c.times == []
    assert len(a.times) == len(b.times) == len(a.cpu_times) == 3
    assert max(a.times) < 200  # the setup's sleep is not timed
    assert a.peak_mb is None  # CPU
    assert harness.summary(c, 2) == {'error': 'RuntimeError: c broke'}
    s = harness.summary(b, 2)
    assert s['ms_per_step'] == statistics.median(b.times)
    assert s['img_per_s'] == pytest.approx(2e3 / s['ms_per_step'])


@pytest.mark.slow
def test_paper_flops_match_the_counted_flops_of_our_f0():
    # the MFU's FLOPs: the paper's GMACs scaled to the image size
    from torch.utils.flop_counter import FlopCounterMode
    model = harness.build_ours('f0').eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.randn(1, 3, 128, 128), mode='tensor')
    expected = harness.paper_flops('f0', 128, train=False)
    assert counter.get_total_flops() == pytest.approx(expected, rel=0.01)
    assert harness.paper_flops('f0', 128, train=True) == 3 * expected
    assert harness.paper_flops(None, 64, train=False) is None


def test_timm_counterpart_is_the_same_network():
    # timm's weights, converted by our converter, load strictly into our
    # model and give the same logits: both sides time the same network.
    torch.manual_seed(0)
    theirs = harness.build_timm(harness.TINY_ARCH, num_classes=10).eval()
    ours = harness.build_ours(
        'tiny', num_classes=10, act_cfg=dict(type='GELU',
                                             approximate='none')).eval()
    with torch.no_grad():  # non-zero skip gains, so every block matters
        for name, p in theirs.named_parameters():
            if name.endswith('skipinit_gain'):
                p.fill_(0.5)
    ours.load_state_dict(
        convert_timm_state_dict(theirs.state_dict(), harness.TINY_ARCH),
        strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        # WS eps differs (timm: var + 1e-5, ours: max(var * fan_in, 1e-4))
        torch.testing.assert_close(
            ours(x, mode='tensor'), theirs(x), rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match='stem_widths'):
        harness.timm_cfg_from_arch(
            dict(harness.TINY_ARCH, stem_widths=[8, 16, 16, 32]))


# ---------------------------------------------------------- command lines
def test_benchmark_arguments_are_checked(capsys):
    bench = importlib.import_module('lab.benchmark')
    for argv, words in ((['f9'], ["'f9'", 'f0',
                                  'f6']), (['f0', '--padding',
                                            'reflect'], ['reflect']),
                        (['{"depths": [1]}'], ['--img-size']),
                        (['f0', '--sam', '1.5'], ['--sam', '1.5'])):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
        err = capsys.readouterr().err
        assert all(w in err for w in words), (argv, err)
    args = bench.parse_args(['F1', '--device', 'cpu', '--sam'])
    assert (args.arch, args.img_size, args.sam_fraction) == ('f1', 224, 0.2)


@pytest.mark.slow
def test_quick_speed_run_writes_the_documented_json(tmp_path):
    bench = importlib.import_module('lab.benchmark')
    out, md = tmp_path / 'quick.json', tmp_path / 'quick.md'
    bench.main(['--quick', '--sam', '--out', str(out), '--md', str(md)])
    res = json.loads(out.read_text())
    assert res['settings']['batch'] == 2 and res['settings']['device'] == 'cpu'
    assert res['env']['device_name'] and res['env']['threads'] >= 1
    assert all(res['env']['versions'][m] != 'n/a'
               for m in ('torch', 'timm', 'mmengine', 'mmpretrain'))
    # the tiny arch is the same network in timm
    assert res['params']['ours'] == res['params']['timm'] > 0
    assert set(res['train']) == {
        'ours', 'ours (no AGC)', 'timm', 'timm (no AGC)', 'ours train_step',
        'ours SAM0.2'
    }
    assert set(res['infer']) == {'ours', 'ours (deploy)', 'timm'}
    for section in ('train', 'infer'):
        for name, r in res[section].items():
            assert 'error' not in r, (section, name, r)
            assert len(r['ms_all']) == 3 and min(r['ms_all']) > 0
            assert r['peak_mem_mb'] is None and r['mfu'] is None  # CPU
    assert set(res['ratios']) == {
        'train: ours / timm speed (paired)',
        'train: ours (no AGC) / timm (no AGC) speed (paired)',
        'train: ours AGC share of step', 'train: timm AGC share of step',
        'train: ours SAM0.2 / ours train_step step time',
        'infer: ours / timm speed (paired)',
        'infer: ours (deploy) / timm speed (paired)'
    }
    assert all(v > 0 for k, v in res['ratios'].items() if 'share' not in k)
    text = md.read_text()
    assert '| mode | runner | ms/step | img/s | peak MiB | MFU |' in text
    assert res['env']['device_name'] in text and '--quick --sam' in text


@pytest.mark.slow
def test_agc_kernel_clips_as_timm_and_spares_the_classifier(tmp_path):
    res = importlib.import_module('lab.benchmark_agc').main(
        ['--quick', '--out', str(tmp_path / 'agc.json')])
    assert res == json.loads((tmp_path / 'agc.json').read_text())
    assert res['num_clipped_tensors'] == res['num_tensors'] - 1
    assert res['max_rel_diff_vs_timm'] < 1e-5
    # head.fc.weight keeps its gradient; the clipped tensors change
    assert 1 <= res['tensors_left_unchanged'] < res['num_clipped_tensors']
    assert set(res['agc_ms']) == {'ours', 'timm', 'loop'}
    assert all(len(r['ms_all']) == 2 for r in res['runners'].values())


@pytest.mark.slow
def test_sam_cost_runs_the_sam_steps(tmp_path):
    res = importlib.import_module('lab.benchmark_sam').main([
        '--quick', '--fractions', '0.2', '1', '--out',
        str(tmp_path / 'sam.json')
    ])
    assert list(res['results']) == ['train_step', 'SAM0.2', 'SAM1']
    for r in res['results'].values():
        assert 'error' not in r and len(r['ms_all']) == 2
        assert r['x_plain'] > 0 and r['x_plain_cpu'] > 0
    with pytest.raises(SystemExit):
        importlib.import_module('lab.benchmark_sam').main(
            ['--fractions', '1.5'])


@pytest.mark.slow
def test_ws_folding_drops_the_standardisation_ops():
    res = importlib.import_module('lab.benchmark_deploy').main([
        '--arch', 'tiny', '--img-size', '32', '--batch', '1', '--steps', '1',
        '--warmup', '0'
    ])
    ops = res['aten_ops_per_forward']
    # per WS conv the standardisation (mean, norm, clamp, rsqrt, ...) is gone
    assert ops['folded'] < ops['unfolded'] - 4 * 17
    assert res['max_abs_logit_diff'] <= 1e-5 < res['max_abs_logit']
    assert res['speedup_folded'] > 0


@pytest.mark.slow
def test_onnx_benchmark_times_both_graphs(tmp_path):
    pytest.importorskip('onnxruntime')
    pytest.importorskip('onnx')
    config = 'configs/fashion_mnist/nfnet-demo_1xb128_fashion-mnist.py'
    res = measures.onnx_folding(osp.join(ROOT, config), 'none', runs=2)
    r = res['results']
    assert set(r) == {
        'folded', 'unfolded', 'folded (ORT opt off)', 'unfolded (ORT opt off)'
    }
    assert r['folded']['num_nodes'] < r['unfolded']['num_nodes']
    assert all(v['max_abs_diff'] <= 1e-4 and len(v['ms_all']) == 2
               for v in r.values())
    assert res['speedup_folded'] > 0 and res['env']['versions']['onnxruntime']


@pytest.mark.slow
def test_dataloader_benchmark_counts_the_reference_pairing(tmp_path):
    """F0's configured flow decodes two distinct images per training sample
    (DeepMind's pairing), within-batch partners and no mixing one; RandAugment
    runs once per sample, twice when it comes before the mix."""
    from mmengine.config import Config

    from lab.benchmarks.dataloader import dataloader_throughput
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'nfnet', 'nfnet-f0_8xb128_in1k.py'))
    threads = torch.get_num_threads()
    rows = {
        r['flow']: r
        for r in dataloader_throughput(cfg, batch_size=4, batches=2, images=8)
    }
    assert torch.get_num_threads() == threads  # a loader worker's 1, restored
    calls = {flow: r['calls_per_image'] for flow, r in rows.items()}
    assert [
        calls[f]['decode'] for f in ('old', 'new', 'new-batch', 'ra-first')
    ] == [1, 2, 1, 2]
    assert 'mix' not in calls['old'] and calls['new']['mix'] == 1
    assert calls['new']['randaugment'] == 1
    assert calls['ra-first']['randaugment'] == 2
    assert all(r['images_per_s'] > 0 for r in rows.values())
    proc = subprocess.run([
        sys.executable, '-m', 'lab.benchmark_dataloader',
        osp.join(ROOT, 'configs', 'nfnet',
                 'nfnet-f0_in1k-pre_8xb32_cifar10.py')
    ],
                          capture_output=True,
                          text=True,
                          timeout=300,
                          cwd=ROOT)
    # a fine-tuning config (no mixing): one usage error naming the config
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'cifar10.py: the config\'s training dataset must be a ' \
        'MixupCutMixDataset' in proc.stderr and 'Traceback' not in proc.stderr


# ------------------------------------------------------------ gpu_report.sh
def _gpu_report(*args, env=None, timeout=900):
    return subprocess.run(['bash', GPU_REPORT, *args],
                          capture_output=True,
                          text=True,
                          timeout=timeout,
                          env={
                              **os.environ, 'PYTHONPATH': ROOT,
                              **(env or {})
                          })


def test_gpu_report_dry_run_lists_steps_within_budget(tmp_path):
    proc = _gpu_report('--dry-run', str(tmp_path / 'out'))
    assert proc.returncode == 0, proc.stderr
    steps = [
        line.split()[:3] for line in proc.stdout.splitlines()
        if line.split()[2:3] == ['s']
    ]
    names = [name for name, _, _ in steps]
    budgets = {name: int(budget) for name, budget, _ in steps}
    assert names[0] == 'cuda-tests' and names[-1] == 'fashion-mnist'
    assert {'eager-b128', 'eager-b256', 'compile-b128',
            'compile-b256'} <= set(names)
    # everything but the Fashion-MNIST recipe fits in 8.5 minutes
    assert sum(budgets.values()) - budgets['fashion-mnist'] <= 8.5 * 60
    assert '--peak-batch' in proc.stdout  # the measured memory peak
    assert f'total budget: {sum(budgets.values())} s' in proc.stdout
    assert 'pytest -m cuda' in proc.stdout and '--dtype bf16' in proc.stdout
    assert not (tmp_path / 'out').exists()  # nothing ran
    bad = _gpu_report('--fast')
    assert bad.returncode == 2 and '--fast' in bad.stderr


@pytest.mark.slow
def test_gpu_report_reports_each_step_even_when_one_fails(tmp_path):
    # a stand-in benchmark that hangs at batch 4 and crashes without inference
    fake = tmp_path / 'bench.py'
    fake.write_text("import sys, time\n"
                    "if '--no-inference' in sys.argv: sys.exit(3)\n"
                    "time.sleep(600)\n")
    out = tmp_path / 'out'
    proc = _gpu_report(
        str(out),
        '--quick',
        env=dict(
            BENCH=f'{sys.executable} {fake}',
            GPU_REPORT_STEP_S='2',
            FASHION_MNIST_ROOT=str(tmp_path / 'nowhere'),
            GPU_REPORT_STEPS='eager-b4,eager-b4-contiguous,fashion-mnist'))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / 'report.json').read_text())
    assert [(s['name'], s['status'], s['budget_s']) for s in report['steps']] \
        == [('eager-b4', 'timed out', 2),
            ('eager-b4-contiguous', 'failed (exit 3)', 2),
            ('fashion-mnist', 'failed (exit 3)', 2)]
    assert {t['met'] for t in report['targets']} == {None}  # not measured
    text = (out / 'report.md').read_text()
    assert '| eager-b4-contiguous | 2 |' in text
    assert 'Fashion-MNIST recipe (GPU config): top-1 None' in text
    log = (out / 'steps.log').read_text()
    assert '== eager-b4: exit 124' in log and 'FASHION_MNIST_ROOT' in log


def test_gpu_report_deadline_skips_the_rest_and_still_reports(tmp_path):
    out = tmp_path / 'out'
    proc = _gpu_report(
        str(out), '--quick', env=dict(GPU_REPORT_DEADLINE_S='0'))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / 'report.json').read_text())
    assert [s['name'] for s in report['steps']][-1] == 'fashion-mnist'
    assert {s['status'] for s in report['steps']} == {'skipped (deadline)'}
    assert 'skipped, the deadline (0 s)' in (out / 'steps.log').read_text()


@pytest.mark.slow
def test_gpu_report_quick_fashion_mnist_step_trains_and_reports(tmp_path):
    """The step's --cfg-options reach the config's (nested) datasets: the
    quick run trains one epoch on 1,024 images and reports its top-1."""
    if not osp.exists(
            osp.join(DEFAULT_FASHION_MNIST_ROOT, 't10k-images-idx3-ubyte.gz')):
        pytest.skip('no Fashion-MNIST (apt-get install dataset-fashion-mnist)')
    out = tmp_path / 'out'
    proc = _gpu_report(
        str(out),
        '--quick',
        env=dict(
            GPU_REPORT_STEPS='fashion-mnist',
            GPU_REPORT_STEP_S='300',
            FASHION_MNIST_ROOT=DEFAULT_FASHION_MNIST_ROOT))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (step, ) = json.loads((out / 'report.json').read_text())['steps']
    assert step['status'] == 'ok', (out / 'steps.log').read_text()
    assert step['fashion_mnist']['epochs'] == 1
    assert 0 <= step['fashion_mnist']['top1'] <= 100


@pytest.mark.slow
def test_gpu_report_quick_run_checks_the_targets(tmp_path):
    out = tmp_path / 'out'
    proc = _gpu_report(
        str(out),
        '--quick',
        env=dict(GPU_REPORT_STEPS='eager-b2', GPU_REPORT_STEP_S='600'))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / 'report.json').read_text())
    assert [s['status'] for s in report['steps']] == ['ok']
    assert report['steps'][0]['result']['settings']['sam_fraction'] == 0.2
    targets = {
        t['target']: t
        for t in report['targets'] if t['met'] is not None
    }
    assert set(targets) == {
        'AGC share of our training step <= 2%',
        'SAM(0.2) step / plain step <= 1.3x',
        'folded inference, ours (deploy) / timm >= 1.1x',
        'F0 bf16 training, ours / timm, both eager (info: >= 1.0x)'
    }
    sam = targets['SAM(0.2) step / plain step <= 1.3x']
    assert sam['met'] == (sam['value'] <= 1.3)
    text = (out / 'report.md').read_text()
    assert '| target | step | measured | met |' in text
    assert '### eager-b2' in text


@pytest.mark.cuda
def test_speed_on_cuda_reports_memory_and_mfu():
    res = measures.speed(
        'f0',
        batch=2,
        img_size=64,
        device='cuda',
        dtype='bf16',
        channels_last=True,
        sam_fraction=0.5,
        steps=2,
        warmup=1)
    for section in ('train', 'infer'):
        for name, r in res[section].items():
            assert 'error' not in r, (section, name, r)
            assert r['peak_mem_mb'] > 0
    assert 'train: ours / timm peak mem' in res['ratios']
    assert 'train: ours SAM0.5 / ours train_step step time' in res['ratios']
    if res['settings']['peak_tflops']:
        assert 0 < res['train']['ours']['mfu'] < 1


def test_report_shows_the_memory_plan_step(tmp_path):
    (tmp_path / 'steps.tsv').write_text('memory-plan\t30\t0\t12\n')
    row = dict(
        config='configs/nfnet/nfnet-f0_8xb128_in1k.py',
        with_cp=False,
        peak_batch=128,
        measured_peak_gib=6.04,
        estimated_peak_gib=5.71)
    (tmp_path / 'memory-plan.json').write_text(json.dumps(dict(rows=[row])))
    text = report.report_markdown(report.gpu_report(str(tmp_path)))
    assert '### memory-plan' in text
    assert '| nfnet-f0_8xb128_in1k.py | False | 128 | 6.04 | 5.71 |' in text

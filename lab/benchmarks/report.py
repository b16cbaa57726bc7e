"""Markdown of the benchmarks, and the report of ``gpu_report.sh``.

``python -m lab.benchmarks.report WORK_DIR OUT_DIR`` reads ``steps.tsv``
(name, budget s, exit code, seconds) and each step's JSON or log in
``WORK_DIR``; it writes ``report.md`` and ``report.json`` (targets, steps).
"""
import json
import os.path as osp
import re
import sys
from typing import Dict, List, Optional

from .harness import markdown_table, write_json

# (target, ratio key, step name prefix, bound, at most?) for the GPU goals
TARGETS = [
    ('F0 bf16 training, ours compiled / timm eager >= 1.3x',
     'train: ours / timm speed (paired)', 'compile', 1.3, False),
    ('training peak memory, ours / timm <= 1', 'train: ours / timm peak mem',
     'eager', 1.0, True),
    ('AGC share of our training step <= 2%', 'train: ours AGC share of step',
     'eager', 0.02, True),
    ('SAM(0.2) step / plain step <= 1.3x',
     'train: ours SAM0.2 / ours train_step step time', 'eager', 1.3, True),
    ('folded inference, ours (deploy) / timm >= 1.1x',
     'infer: ours (deploy) / timm speed (paired)', 'eager', 1.1, False),
    ('F0 bf16 training, ours / timm, both eager (info: >= 1.0x)',
     'train: ours / timm speed (paired)', 'eager', 1.0, False),
]


def speed_markdown(result: Dict) -> str:
    """The runner and ratio tables of one :func:`measures.speed` result."""
    s, env, v = result['settings'], result['env'], result['env']['versions']
    arch = s['arch'].upper() if isinstance(s['arch'], str) else 'custom arch'
    text = (f"**{arch}**, batch {s['batch']}, {s['img_size']} px, "
            f"{s['dtype']}, channels_last={s['channels_last']}, "
            f"compile={s['compile']}"
            f"{' (timm eager)' if s['compile'] and s['timm_eager'] else ''}, "
            f"{s['warmup']} warm-up + {s['steps']} steps (median), on "
            f"{env['device_name']}; torch {v['torch']}, timm {v['timm']}, "
            f"mmengine {v['mmengine']}, mmpretrain {v['mmpretrain']}.\n\n")
    if result.get('command'):
        text += f"`{result['command']}`\n\n"
    rows = []
    for section in ('train', 'infer'):
        for name, r in result[section].items():
            if 'error' in r:
                rows.append(
                    (section, name, f"error: {r['error']}", '', '', ''))
                continue
            mfu = None if r['mfu'] is None else f"{100 * r['mfu']:.1f}%"
            rows.append((section, name, r['ms_per_step'], r['img_per_s'],
                         r['peak_mem_mb'] and round(r['peak_mem_mb']), mfu))
    text += markdown_table(
        ('mode', 'runner', 'ms/step', 'img/s', 'peak MiB', 'MFU'), rows)
    if result['ratios']:
        text += '\n' + markdown_table(
            ('ratio', 'value'), [(k, round(val, 3))
                                 for k, val in result['ratios'].items()])
    for name, e in result.get('explain', {}).items():
        text += f'\nexplain {name}: {e}\n'
    return text


def gpu_report(work_dir: str) -> Dict:
    """Collect the steps' results and check them against :data:`TARGETS`."""
    steps: List[Dict] = []
    with open(osp.join(work_dir, 'steps.tsv')) as f:
        for line in f:
            name, budget, rc, seconds = line.split('\t')
            rc = int(rc)
            status = {
                0: 'ok',
                124: 'timed out',
                137: 'killed',
                -1: 'skipped (deadline)'
            }.get(rc, f'failed (exit {rc})')
            step = dict(
                name=name,
                budget_s=int(budget),
                rc=rc,
                seconds=int(seconds),
                status=status)
            path = osp.join(work_dir, f'{name}.json')
            if osp.exists(path):
                with open(path) as r:
                    step['result'] = json.load(r)
            log = osp.join(work_dir, 'fashion-mnist.log')
            if name == 'fashion-mnist' and osp.exists(log):
                with open(log) as r:  # the last validation top-1, its epoch
                    top1 = re.findall(
                        r'Epoch\(val\) \[(\d+)\].*?'
                        r'accuracy/top1: ([\d.]+)', r.read())
                step['fashion_mnist'] = dict(
                    epochs=int(top1[-1][0]) if top1 else 0,
                    top1=float(top1[-1][1]) if top1 else None)
            steps.append(step)
    targets = []
    for label, key, prefix, bound, at_most in TARGETS:
        found = [(step['name'], step['result']['ratios'][key])
                 for step in steps if step['name'].startswith(prefix)
                 and key in step.get('result', {}).get('ratios', {})]
        rows = [
            dict(
                target=label,
                step=name,
                value=value,
                met=value <= bound if at_most else value >= bound)
            for name, value in found
        ]
        targets += rows or [dict(target=label, step='-', value=None, met=None)]
    return dict(steps=steps, targets=targets)


def report_markdown(report: Dict) -> str:
    """``report.md``: targets, step table, Fashion-MNIST, each step."""
    steps = report['steps']
    env = next((s['result']['env']
                for s in steps if 'env' in s.get('result', {})), None)
    text = '## GPU report\n\n'
    if env:
        text += (f"Device: {env['device_name']}; torch "
                 f"{env['versions']['torch']}, CUDA "
                 f"{env['versions'].get('cuda')}.\n\n")
    text += markdown_table(
        ('target', 'step', 'measured', 'met'),
        [(t['target'], t['step'], t['value'] and round(t['value'], 3), {
            True: 'yes',
            False: '**no**',
            None: 'not measured'
        }[t['met']]) for t in report['targets']])
    text += '\n' + markdown_table(
        ('step', 'budget s', 'took s', 'status'),
        [(s['name'], s['budget_s'], s['seconds'], s['status']) for s in steps])
    for s in steps:
        if 'fashion_mnist' in s:
            fm = s['fashion_mnist']
            text += (f"\nFashion-MNIST recipe (GPU config): top-1 "
                     f"{fm['top1']} after {fm['epochs']} epoch(s), "
                     f"{s['seconds']} s in all ({s['status']}).\n")
        if 'rows' in s.get('result', {}):  # lab.plan_memory
            text += f"\n### {s['name']}\n\n" + markdown_table(
                ('config', 'with_cp', 'batch', 'measured peak GiB',
                 'estimated GiB'),
                [(r['config'].split('/')[-1], r['with_cp'],
                  r.get('peak_batch'), r.get('measured_peak_gib') and round(
                      r['measured_peak_gib'], 2), r.get('estimated_peak_gib')
                  and round(r['estimated_peak_gib'], 2))
                 for r in s['result']['rows']])
        if 'train' in s.get('result', {}):
            text += f"\n### {s['name']}\n\n" + speed_markdown(s['result'])
    return text


def main(argv: Optional[List[str]] = None) -> None:
    work_dir, out_dir = argv or sys.argv[1:]
    report = gpu_report(work_dir)
    write_json(osp.join(out_dir, 'report.json'), report)
    with open(osp.join(out_dir, 'report.md'), 'w') as f:
        f.write(report_markdown(report))


if __name__ == '__main__':
    main()

"""The reproduction's plots and summary tables, from ``results.json``.

Every plot shows each seed's run as a point and the mean with one standard
deviation over seeds as an error bar; a cross is a diverged run.
"""
import json
import os.path as osp
import statistics
from typing import Dict, List, Optional, Tuple

from lab.reproduction.sam import ASCENTS

__all__ = ['arm_runs', 'mean_std', 'plot_results', 'summary_tables']

_STYLE = {
    'bn': ('tab:blue', 'BN twin (batch norm, no clipping)'),
    'nf': ('tab:red', 'NF-ResNet (no clipping)'),
    'nf_agc': ('tab:green', 'NF-ResNet + AGC (best lambda)')
}


def mean_std(values: List[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return (statistics.fmean(values),
            statistics.stdev(values) if len(values) > 1 else 0.)


def arm_runs(runs: List[dict], arm: str, batch_size: int) -> List[dict]:
    """The seeds of ``arm`` at ``batch_size``; for ``nf_agc`` those at the
    best lambda (its grid run included), the final layer not clipped."""
    if arm != 'nf_agc':
        return [
            r for r in runs
            if r['arm'] == arm and r['batch_size'] == batch_size
        ]
    best = [
        r for r in runs if r['name'].endswith(f"_best_s{r['seed']}")
        and r['batch_size'] == batch_size
    ]
    lams = {r['clipping'] for r in best}
    grid = [
        r for r in runs
        if r['arm'] == 'nf_agc' and r['batch_size'] == batch_size
        and '_lam' in r['name'] and r['clipping'] in lams
    ]
    return sorted(grid + best, key=lambda r: r['seed'])


def _points(ax, x, runs, color, key='top1', log=True, label=None):
    """Each run as a point (spread around ``x``), the mean +- std as an
    error bar; returns the mean (None without values)."""
    runs = [r for r in runs if r.get(key) is not None]
    if not runs:
        return None
    for i, r in enumerate(runs):
        offset = i - (len(runs) - 1) / 2
        xi = x * 1.06**offset if log else x + 0.08 * offset
        ax.plot(
            xi,
            r[key],
            'x' if r.get('diverged') else '.',
            color=color,
            alpha=0.6,
            ms=7)
    mean, std = mean_std([r[key] for r in runs])
    ax.errorbar(
        x, mean, yerr=std, fmt='o', color=color, capsize=5, ms=6, label=label)
    return mean


def _figure(caption: str, ncols: int = 1):
    import matplotlib
    matplotlib.use('Agg')
    import textwrap

    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, ncols, figsize=(6.4 * ncols, 5.2))
    fig.subplots_adjust(bottom=0.27, wspace=0.3)
    fig.text(
        0.02,
        0.02,
        textwrap.fill(caption, 100 * ncols),
        fontsize=7.5,
        va='bottom')
    return fig, axes


def _caption(setup: dict) -> str:
    return (f"Fashion-MNIST at {setup['img_size']} px, {setup['epochs']} "
            'epochs at every batch size, lr = 0.1 B/256, Nesterov SGD, '
            f"warm-up + cosine; seeds {setup['seeds']}: dots are runs, "
            'error bars mean +- std, x = diverged.')


def plot_results(out_dir: str) -> List[str]:
    """Write top-1 against batch size, against lambda, the SAM arms and the
    batch-norm plateau as PNGs; return their paths."""
    with open(osp.join(out_dir, 'results.json')) as f:
        data = json.load(f)
    setup, runs = data['setup'], data['runs']
    sizes = setup['batch_sizes']
    figures = []

    fig, ax = _figure(
        'Paper (Fig. 2a): unclipped NF-ResNets degrade as the batch size '
        'and the linearly scaled lr grow; with AGC (the best lambda per '
        'batch size) they match batch-normalised ResNets up to batch '
        '4096. ' + _caption(setup))
    for arm, (color, label) in _STYLE.items():
        means = [(b, _points(ax, b, arm_runs(runs, arm, b), color))
                 for b in sizes]
        means = [(b, m) for b, m in means if m is not None]
        ax.plot([b for b, _ in means], [m for _, m in means],
                '-',
                color=color,
                alpha=0.5,
                label=label)
    ax.set(
        xscale='log',
        xlabel='batch size',
        ylabel='test top-1 (%)',
        title=f"{data['net']['name']}: top-1 against batch size")
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.xaxis.set_minor_formatter('')
    ax.legend(fontsize=8)
    figures.append((fig, 'top1_vs_batch_size.png'))

    grid = setup['grid_batch_sizes']
    fig, axes = _figure(
        'Paper (Fig. 2b): the best clipping threshold lambda shrinks as '
        'the batch grows; clipping the final linear layer hurts (Sec. '
        '4.1). Line: the grid (seed 0); error bar at the best lambda: all '
        'seeds; bands: the unclipped arms (mean +- std); black: the final '
        'layer clipped too (drawn at 1.25 x lambda). ' + _caption(setup),
        ncols=len(grid))
    for ax, b in zip(list(axes), grid):
        line = sorted((r for r in runs if r['arm'] == 'nf_agc'
                       and r['batch_size'] == b and '_lam' in r['name']),
                      key=lambda r: r['clipping'])
        ax.plot([r['clipping'] for r in line], [r['top1'] for r in line],
                '.-',
                color=_STYLE['nf_agc'][0],
                alpha=0.6,
                label='NF + AGC, grid (seed 0)')
        best = arm_runs(runs, 'nf_agc', b)
        if best:
            _points(
                ax,
                best[0]['clipping'],
                best,
                _STYLE['nf_agc'][0],
                label='NF + AGC at the best lambda, all seeds')
        head = [r for r in runs if r['clip_head'] and r['batch_size'] == b]
        if head:
            _points(
                ax,
                head[0]['clipping'] * 1.25,
                head,
                'black',
                label='final layer clipped too')
        for arm in ('bn', 'nf'):
            values = [r['top1'] for r in arm_runs(runs, arm, b)]
            if values:
                mean, std = mean_std(values)
                ax.axhline(
                    mean, ls='--', color=_STYLE[arm][0], label=_STYLE[arm][1])
                ax.axhspan(
                    mean - std, mean + std, color=_STYLE[arm][0], alpha=0.12)
        ax.set(
            xscale='log',
            xlabel='clipping threshold lambda',
            ylabel='test top-1 (%)',
            title=f'batch {b}: top-1 against '
            'lambda')
        ax.set_xticks(setup['clippings'],
                      [f'{c:g}' for c in setup['clippings']])
        ax.xaxis.set_minor_formatter('')
        ax.legend(fontsize=7)
    figures.append((fig, 'top1_vs_clipping.png'))

    fig, (ax1, ax2) = _figure(
        'Paper (App. A.4): the ascent on 20% of the batch performs as well '
        'as on the whole batch at 20-40% extra step time instead of 100%; '
        'an ascent on a different batch (here 20% of the previous one) '
        'destroys the benefit. Step time: each run against a plain step of '
        'the same model and batch, interleaved. '
        f"NF-ResNet, batch {setup['sam_batch_size']}, rho "
        f"{setup['sam_rho']:g}. " + _caption(setup),
        ncols=2)
    for i, ascent in enumerate(ASCENTS):
        arm = [r for r in runs if r['arm'] == 'sam' and r['ascent'] == ascent]
        _points(ax1, i, arm, 'tab:purple', log=False)
        _points(ax2, i, arm, 'tab:purple', key='step_time_ratio', log=False)
    ax2.axhspan(
        1.2,
        1.4,
        color='tab:green',
        alpha=0.15,
        label='paper: 0.2 costs 1.2-1.4x')
    ax2.axhline(2., ls='--', color='gray', label='2x (full SAM, paper)')
    for ax, ylabel in ((ax1, 'test top-1 (%)'), (ax2,
                                                 'step time / plain step')):
        ax.set_xticks(range(len(ASCENTS)), ASCENTS)
        ax.set(xlabel='ascent', ylabel=ylabel)
    ax1.set_title('SAM arms: top-1')
    ax2.set_title('SAM arms: step time over a plain step')
    ax2.legend(fontsize=8)
    figures.append((fig, 'sam.png'))

    plateau = [r for r in runs if r['arm'] == 'plateau']
    if plateau:
        fig, ax = _figure(
            'Where batch norm plateaus: the BN twin at batch '
            f"{sizes[0]} trained for {plateau[0]['epochs']} epochs (tested "
            f"after each; its cosine spans all {plateau[0]['epochs']}) "
            f"against the sweep's {setup['epochs']}-epoch runs. " +
            _caption(setup))
        curve = plateau[0]['top1_per_epoch']
        ax.plot(
            range(1,
                  len(curve) + 1),
            curve,
            '.-',
            color='tab:blue',
            label=f"BN twin, {plateau[0]['epochs']}-epoch schedule")
        _points(
            ax,
            setup['epochs'],
            arm_runs(runs, 'bn', sizes[0]),
            'black',
            log=False,
            label=f"BN twin, the sweep's {setup['epochs']} epochs")
        ax.set(
            xlabel='epoch',
            ylabel='test top-1 (%)',
            title=f'BN twin at batch {sizes[0]}: test top-1')
        ax.legend(fontsize=8)
        figures.append((fig, 'plateau.png'))
    paths = []
    for fig, name in figures:
        paths.append(osp.join(out_dir, name))
        fig.savefig(paths[-1], dpi=100)
    return paths


def _row(runs: List[dict], key: str = 'top1') -> Optional[str]:
    values = [r[key] for r in runs if r.get(key) is not None]
    if not values:
        return None
    mean, std = mean_std(values)
    each = ', '.join(f'{v:g}' for v in values)
    return f'{mean:.2f} +- {std:.2f} ({each})'


def summary_tables(data: Dict) -> str:
    """Markdown tables of the arms (mean +- std over seeds, each seed)."""
    setup, runs = data['setup'], data['runs']
    lines = [
        '| arm | ' + ' | '.join(f"batch {b}"
                                for b in setup['batch_sizes']) + ' |',
        '|---' * (len(setup['batch_sizes']) + 1) + '|'
    ]
    for arm in ('bn', 'nf', 'nf_agc'):
        cells = []
        for b in setup['batch_sizes']:
            group = arm_runs(runs, arm, b)
            lam = f" @ {group[0]['clipping']:g}" if arm == 'nf_agc' and \
                group else ''
            cells.append((_row(group) or '-') + lam)
        lines.append(f'| {arm} | ' + ' | '.join(cells) + ' |')
    head = [r for r in runs if r['clip_head']]
    lines += [
        '', f'final layer clipped: {_row(head)}', '',
        '| lambda | ' + ' | '.join(f'batch {b}'
                                   for b in setup['grid_batch_sizes']) + ' |',
        '|---' * (len(setup['grid_batch_sizes']) + 1) + '|'
    ]
    for c in setup['clippings']:
        cells = [
            next((f"{r['top1']:g}" + (' (diverged)' if r['diverged'] else '')
                  for r in runs if r['arm'] == 'nf_agc' and '_lam' in r['name']
                  and r['batch_size'] == b and r['clipping'] == c), '-')
            for b in setup['grid_batch_sizes']
        ]
        lines.append(f'| {c:g} | ' + ' | '.join(cells) + ' |')
    lines += ['', '| ascent | top-1 | step time ratio |', '|---|---|---|']
    for a in ASCENTS:
        arm = [r for r in runs if r['arm'] == 'sam' and r['ascent'] == a]
        lines.append(f'| {a} | {_row(arm)} | '
                     f"{_row(arm, 'step_time_ratio')} |")
    for r in runs:
        if r['arm'] == 'plateau':
            lines += [
                '', f"plateau ({r['epochs']} epochs, per epoch): "
                f"{r['top1_per_epoch']}"
            ]
    return '\n'.join(lines)

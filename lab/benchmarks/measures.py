"""The measurements: ours vs timm, the AGC kernel, SAM's cost, WS folding.

Each returns a JSON-ready dict with ``env``, ``settings`` and its results:
median times in ms (:func:`summary`), paired ratios (:func:`paired_ratio`).
AGC is the paper's: clipping 0.01, eps 1e-3, the classifier weight excluded.
"""
import contextlib
import copy
import os.path as osp
import statistics
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nfnet_mm.deploy import export_and_check, ort_session
from .harness import (VARIANTS, Runner, bf16_peak_tflops, build_ours,
                      build_timm, machine_info, paired_ratio, paper_flops,
                      summary, tensor_bytes, time_interleaved)

DEMO_IMAGE = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'demo',
    'demo.png')
AGC = dict(clipping=0.01, eps=1e-3, exclude=['head.fc.weight'])
DTYPES = {'fp32': None, 'bf16': torch.bfloat16}


def build_optim_wrapper(model: nn.Module,
                        lr: float,
                        agc: bool = True,
                        amp_dtype: Optional[str] = None,
                        kind: str = 'AGCOptimWrapper',
                        optimizer=None,
                        **kwargs):
    """Our optimizer wrapper ``kind`` (its Amp variant with ``amp_dtype``),
    bound to ``model`` through its public ``optim_context``; ``optimizer``
    defaults to SGD with Nesterov momentum."""
    from mmpretrain.registry import OPTIM_WRAPPERS
    optimizer = optimizer or torch.optim.SGD(
        model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    cfg = dict(
        type=kind, optimizer=optimizer, agc=AGC if agc else None, **kwargs)
    if amp_dtype:
        cfg.update(type='Amp' + kind, dtype=amp_dtype)
    wrapper = OPTIM_WRAPPERS.build(cfg)
    with wrapper.optim_context(model):  # binds the parameter names
        pass
    return wrapper


def mmengine_batch(x: torch.Tensor, y: torch.Tensor) -> Dict:
    """``x, y`` as MMEngine's data loader gives a batch."""
    from mmpretrain.structures import DataSample
    return dict(
        inputs=x,
        data_samples=[
            DataSample().set_gt_label(int(label)) for label in y.cpu()
        ])


def _state(model: nn.Module, optimizer=None):
    return lambda: tensor_bytes(model.parameters(), model.buffers(),
                                *([optimizer] if optimizer else []))


def _autocast(device: torch.device, dtype: str):
    return (contextlib.nullcontext() if DTYPES[dtype] is None else
            torch.autocast(device.type, dtype=DTYPES[dtype]))


def sam_runners(model: nn.Module,
                x: torch.Tensor,
                y: torch.Tensor,
                fractions: Sequence[float],
                rho: float,
                agc: bool,
                dtype: str = 'fp32',
                prefix: str = '') -> List[Runner]:
    """MMEngine ``train_step`` of a ``SAMImageClassifier``: the plain step
    (``AGCOptimWrapper``) and one SAM step per ascent fraction."""
    cuda_amp = 'bfloat16' if x.is_cuda and dtype == 'bf16' else None
    autocast = (
        contextlib.nullcontext() if cuda_amp else _autocast(x.device, dtype))
    data, lr = mmengine_batch(x, y), 0.1 * len(x) / 256
    wrappers = {
        f'{prefix}train_step': build_optim_wrapper(model, lr, agc, cuda_amp)
    }
    for fraction in fractions:
        wrappers[f'{prefix}SAM{fraction:g}'] = build_optim_wrapper(
            model,
            lr,
            agc,
            cuda_amp,
            kind='SAMOptimWrapper',
            rho=rho,
            ascent_fraction=fraction)

    def runner(name, wrapper):

        def step():
            with autocast:
                model.train_step(data, wrapper)

        return Runner(name, step, state_bytes=_state(model, wrapper.optimizer))

    return [runner(name, w) for name, w in wrappers.items()]


def _explain(fn, x: torch.Tensor) -> Dict:
    import torch._dynamo as dynamo
    dynamo.reset()
    try:
        exp = dynamo.explain(fn)(x)
    except Exception as err:  # reported in the results
        return dict(error=f'{type(err).__name__}: {err}'.splitlines()[0])
    return dict(
        graph_count=exp.graph_count,
        graph_break_count=exp.graph_break_count,
        break_reasons=[
            str(getattr(b, 'reason', b)).splitlines()[0]
            for b in exp.break_reasons[:10]
        ])


def speed(arch,
          batch: int,
          img_size: int,
          device: str = 'cpu',
          dtype: str = 'fp32',
          channels_last: bool = False,
          compile: bool = False,
          timm_eager: bool = False,
          paddings: Sequence[Optional[str]] = (None, ),
          ours_act: Optional[str] = None,
          drop_path_rate: float = 0.,
          timm: bool = True,
          agc_ablation: bool = True,
          train: bool = True,
          inference: bool = True,
          sam_fraction: Optional[float] = None,
          sam_rho: float = 0.05,
          with_cp: bool = False,
          explain: bool = False,
          steps: int = 20,
          warmup: int = 5,
          peak_tflops: Optional[float] = None,
          seed: int = 0) -> Dict:
    """Ours vs timm: training steps, inference, AGC share, SAM cost.

    Training: ours through ``AGCOptimWrapper`` (its Amp twin for bf16 on
    CUDA), timm's with ``adaptive_clip_grad`` and SGD; with ``agc_ablation``
    each also without AGC. Inference: ours, ours after ``switch_to_deploy()``
    and timm's. With ``sam_fraction``, ``train_step`` with and without SAM;
    with ``with_cp``, our training step with per-block checkpointing too.

    Args:
        arch (str | dict): ``'f0'``..``'f6'``, a timm NF name or an arch
            dict.
        paddings (Sequence): Ours with each padding (None: the arch's).
        compile (bool): ``torch.compile`` the forwards (timm's stays eager
            with ``timm_eager``).
        peak_tflops (float, optional): Device peak for MFU; defaults to the
            bf16 table for bf16 runs on CUDA (MFU needs a named variant).
    """
    settings = dict(locals())
    torch.manual_seed(seed)
    dev = torch.device(device)
    if dev.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError(f'device {device!r}: CUDA is not available')
    variant = arch if isinstance(arch, str) and arch in VARIANTS else None
    dropout = VARIANTS[variant][2] if variant else 0.
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(
        batch, 3, img_size, img_size, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (batch, ), device=dev)
    lr, autocast = 0.1 * batch / 256, _autocast(dev, dtype)
    cuda_amp = 'bfloat16' if dev.type == 'cuda' and dtype == 'bf16' else None

    act = {} if ours_act is None else dict(
        act_cfg=dict(
            type='GELU', approximate={
                'tanh': 'tanh',
                'erf': 'none'
            }[ours_act]))
    models = {
        ('ours' if len(paddings) == 1 else f'ours[{pad}]'):
        build_ours(
            arch,
            dropout=dropout,
            padding=pad,
            drop_path_rate=drop_path_rate,
            **act)
        for pad in paddings
    }
    if with_cp:
        models['ours (with_cp)'] = build_ours(
            arch,
            dropout=dropout,
            padding=paddings[0],
            drop_path_rate=drop_path_rate,
            with_cp=True,
            **act)
    if timm:
        models['timm'] = build_timm(
            arch, dropout=dropout, drop_path_rate=drop_path_rate)
    for model in models.values():
        model.to(device=dev, memory_format=fmt)

    def forward(name, model):
        fwd = model if name == 'timm' else (
            lambda t: model.head(model.extract_feat(t)))
        return (torch.compile(fwd)
                if compile and not (name == 'timm' and timm_eager) else fwd)

    peak = peak_tflops or (bf16_peak_tflops(dev) if dtype == 'bf16' else None)
    result = dict(
        env=machine_info(dev),
        settings=settings,
        train={},
        infer={},
        ratios={},
        explain={},
        params={
            n: sum(p.numel() for p in m.parameters())
            for n, m in models.items()
        })
    result['settings']['peak_tflops'] = peak
    if explain:
        for name, model in models.items():
            with torch.no_grad(), autocast:
                result['explain'][name] = _explain(
                    forward(name, model.eval()), x)
    runners = {}
    if train:
        from timm.utils.agc import adaptive_clip_grad
        for name, model in models.items():
            fwd = forward(name, model.train())
            if name == 'ours (with_cp)':
                agc_options = (True, )
            else:
                agc_options = (True, False) if agc_ablation else (True, )
            for agc in agc_options:
                label = name if agc else f'{name} (no AGC)'
                if name != 'timm':
                    wrapper = build_optim_wrapper(model, lr, agc, cuda_amp)

                    def step(fwd=fwd, wrapper=wrapper, model=model):
                        with wrapper.optim_context(model), autocast:
                            logits = fwd(x)
                        wrapper.update_params(
                            F.cross_entropy(logits.float(), y))

                    opt = wrapper.optimizer
                else:
                    opt = torch.optim.SGD(
                        model.parameters(), lr=lr, momentum=0.9, nesterov=True)
                    clipped = [
                        p for n, p in model.named_parameters()
                        if n != 'head.fc.weight'
                    ]

                    def step(fwd=fwd, opt=opt, agc=agc, clipped=clipped):
                        with autocast:
                            logits = fwd(x)
                        F.cross_entropy(logits.float(), y).backward()
                        if agc:
                            adaptive_clip_grad(clipped, AGC['clipping'],
                                               AGC['eps'])
                        opt.step()
                        opt.zero_grad(set_to_none=True)

                runners[label] = Runner(
                    label, step, state_bytes=_state(model, opt))
        if sam_fraction:
            sam_model = build_ours(
                arch, dropout=dropout, sam=True,
                drop_path_rate=drop_path_rate).to(
                    device=dev, memory_format=fmt)
            for r in sam_runners(
                    sam_model,
                    x,
                    y, [sam_fraction],
                    sam_rho,
                    True,
                    dtype,
                    prefix='ours '):
                runners[r.name] = r
        time_interleaved(list(runners.values()), warmup, steps, dev)
        flops = paper_flops(variant, img_size, train=True)
        for name, r in runners.items():
            result['train'][name] = summary(
                r, batch, None if 'SAM' in name else flops and flops * batch,
                peak)
    if inference:
        infer = {}
        for name, model in models.items():
            if name == 'ours (with_cp)':
                continue  # the same inference as ours
            variants = [(name, model.eval())]
            if name != 'timm':
                folded = copy.deepcopy(model)
                folded.backbone.switch_to_deploy()
                variants.append((f'{name} (deploy)', folded))
            for label, m in variants:

                def step(fwd=forward(name, m)):
                    with torch.no_grad(), autocast:
                        fwd(x)

                infer[label] = Runner(label, step, state_bytes=_state(m))
        time_interleaved(list(infer.values()), warmup, steps, dev)
        flops = paper_flops(variant, img_size, train=False)
        for name, r in infer.items():
            result['infer'][name] = summary(r, batch, flops and flops * batch,
                                            peak)
        runners.update({f'infer {k}': v for k, v in infer.items()})
    result['ratios'] = _ratios(runners)
    return result


def _ratios(runners: Dict[str, Runner]) -> Dict[str, float]:
    """Paired speed ratios ours/timm (> 1: ours faster), peak memory ratios,
    the AGC share of a step and SAM's cost over the plain step."""
    ok = {k: r for k, r in runners.items() if r.error is None and r.times}
    ratios = {}
    for key, r in ok.items():
        section = 'infer' if key.startswith('infer ') else 'train'
        name = key[6:] if section == 'infer' else key
        base = 'timm (no AGC)' if name.endswith('(no AGC)') else 'timm'
        timm = ok.get(f'infer {base}' if section == 'infer' else base)
        if name.startswith('ours') and 'train_step' not in name and \
                'SAM' not in name and timm is not None:
            ratios[f'{section}: {name} / {base} speed (paired)'] = \
                paired_ratio(timm.times, r.times)
            if r.peak_mb and timm.peak_mb:
                ratios[f'{section}: {name} / {base} peak mem'] = \
                    r.peak_mb / timm.peak_mb
        if section == 'train' and f'{name} (no AGC)' in ok:
            ratios[f'train: {name} AGC share of step'] = 1 - paired_ratio(
                ok[f'{name} (no AGC)'].times, r.times)
        if name == 'ours (with_cp)' and 'ours' in ok:
            ratios['train: ours (with_cp) / ours step time (paired)'] = \
                paired_ratio(r.times, ok['ours'].times)
        if 'SAM' in name and 'ours train_step' in ok:
            ratios[f'train: {name} / ours train_step step time'] = \
                paired_ratio(r.times, ok['ours train_step'].times)
    return ratios


def _loop_inplace(params: List[torch.Tensor], clipping: float,
                  eps: float) -> None:
    """Eq. 3 one tensor at a time, in place (the loop without temporaries)."""
    for p in params:
        dims = tuple(range(1, p.ndim))
        g_norm = torch.linalg.vector_norm(p.grad, dim=dims, keepdim=True)
        limit = torch.linalg.vector_norm(p, dim=dims, keepdim=True)
        limit = limit.clamp_min_(eps).mul_(clipping)
        p.grad.mul_(torch.where(g_norm > limit, limit / g_norm, 1.))


@torch.no_grad()
def agc_kernel(arch='f0',
               device: str = 'cpu',
               num_classes: int = 1000,
               steps: int = 15,
               warmup: int = 2,
               batch: int = 2,
               img_size: int = 64,
               seed: int = 0) -> Dict:
    """Our AGC against timm's per-tensor loop on one model's gradients.

    Every step restores the same random gradients (about half of the units
    clip) and runs SGD with lr 0 after clipping by ``ours``, ``timm``,
    ``loop`` (a minimal in-place loop) or none (``sgd``, the baseline of the
    paired AGC times); ``train_step`` gives the AGC share of a step.
    """
    from timm.utils.agc import adaptive_clip_grad
    torch.manual_seed(seed)
    dev = torch.device(device)
    model = build_ours(arch, num_classes=num_classes).to(dev)
    named = list(model.named_parameters())
    params = [p for _, p in named]
    clipped = [p for n, p in named if n not in AGC['exclude']]
    # gradients at the weights' scale times 10**U(-2.75, -1.25) per unit:
    # the ratios straddle the threshold 0.01
    grads = [
        torch.randn_like(p) * (p.pow(2).mean().sqrt() + 1e-3) *
        10**(torch.rand(p.shape[:1] + (1, ) *
                        (p.ndim - 1), device=dev) * 1.5 - 2.75) for p in params
    ]
    sgd = torch.optim.SGD(params, lr=0.)
    ours = build_optim_wrapper(
        model, 0., optimizer=torch.optim.SGD(params, lr=0.))

    def restore():
        for p, g in zip(params, grads):
            p.grad = g.clone()

    x = torch.randn(batch, 3, img_size, img_size, device=dev)
    y = torch.randint(0, num_classes, (batch, ), device=dev)

    def train_step():
        with torch.enable_grad():
            F.cross_entropy(model.head(model.extract_feat(x)), y).backward()
        ours.step()

    methods = {
        'sgd':
        sgd.step,
        'ours':
        ours.step,
        'timm':
        lambda:
        (adaptive_clip_grad(clipped, AGC['clipping'], AGC['eps']), sgd.step()),
        'loop':
        lambda:
        (_loop_inplace(clipped, AGC['clipping'], AGC['eps']), sgd.step()),
    }
    clipped_grads = {}
    for name in ('ours', 'timm'):
        restore()
        methods[name]()
        clipped_grads[name] = [p.grad.clone() for p in params]
    max_rel = max(
        float((a - b).norm() / b.norm().clamp_min(1e-30))
        for a, b in zip(*clipped_grads.values()))
    if not max_rel <= 1e-5:  # else the timings compare different clippings
        raise RuntimeError(
            f'our AGC differs from timm\'s by {max_rel:.2g} (relative)')
    unchanged = sum(
        int(torch.equal(a, g)) for a, g in zip(clipped_grads['ours'], grads))
    runners = {n: Runner(n, fn, setup=restore) for n, fn in methods.items()}
    runners['train_step'] = Runner('train_step', train_step, setup=restore)
    model.train()
    time_interleaved(list(runners.values()), warmup, steps, dev)
    base = runners['sgd'].times
    agc_ms = {
        n: statistics.median(t - s for t, s in zip(runners[n].times, base))
        for n in ('ours', 'timm', 'loop')
    }
    return dict(
        env=machine_info(dev),
        settings=dict(
            arch=arch,
            device=device,
            num_classes=num_classes,
            steps=steps,
            warmup=warmup,
            batch=batch,
            img_size=img_size,
            agc=AGC),
        num_tensors=len(params),
        num_clipped_tensors=len(clipped),
        num_params=sum(p.numel() for p in params),
        tensors_left_unchanged=unchanged,
        max_rel_diff_vs_timm=max_rel,
        runners={
            n: summary(r, batch)
            for n, r in runners.items()
        },
        agc_ms=agc_ms,
        speedup_vs_timm=agc_ms['timm'] / agc_ms['ours'],
        speedup_vs_loop=agc_ms['loop'] / agc_ms['ours'],
        agc_share_of_train_step=agc_ms['ours'] /
        summary(runners['train_step'], batch)['ms_per_step'])


def sam_cost(arch='tiny',
             batch: int = 32,
             img_size: int = 64,
             device: str = 'cpu',
             dtype: str = 'fp32',
             fractions: Sequence[float] = (0.2, 1.0),
             rho: float = 0.05,
             agc: bool = False,
             num_classes: int = 10,
             steps: int = 15,
             warmup: int = 3,
             seed: int = 0) -> Dict:
    """SAM's step time over a plain MMEngine ``train_step``, per fraction
    of the batch used for the ascent (see :func:`sam_runners`)."""
    settings = dict(locals())
    torch.manual_seed(seed)
    dev = torch.device(device)
    model = build_ours(arch, sam=True, num_classes=num_classes).to(dev).train()
    x = torch.randn(batch, 3, img_size, img_size, device=dev)
    y = torch.randint(0, num_classes, (batch, ), device=dev)
    runners = sam_runners(model, x, y, fractions, rho, agc, dtype)
    time_interleaved(runners, warmup, steps, dev)
    plain = runners[0]
    results = {}
    for r in runners:
        results[r.name] = summary(r, batch)
        if r.error is None and plain.error is None:
            results[r.name].update(
                x_plain=paired_ratio(r.times, plain.times),
                x_plain_cpu=paired_ratio(r.cpu_times, plain.cpu_times))
    return dict(
        env=machine_info(dev),
        settings=settings,
        params=sum(p.numel() for p in model.parameters()),
        results=results)


def count_aten_ops(model: nn.Module, x: torch.Tensor) -> int:
    """ATen operators dispatched by one forward pass."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Counter.count += 1
            return func(*args, **(kwargs or {}))

    with torch.inference_mode(), Counter():
        model(x)
    return Counter.count


def ws_folding(arch='f0',
               img_size: int = 256,
               batch: int = 2,
               device: str = 'cpu',
               steps: int = 7,
               warmup: int = 1,
               seed: int = 0) -> Dict:
    """Inference as trained (WS on every call) vs after ``switch_to_deploy``;
    skip gains at 0.2, so that every residual branch reaches the logits."""
    settings = dict(locals())
    torch.manual_seed(seed)
    dev = torch.device(device)
    unfolded = build_ours(arch)
    with torch.no_grad():
        for name, p in unfolded.named_parameters():
            if name.endswith('skip_gain'):
                p.fill_(0.2)
    folded = copy.deepcopy(unfolded)
    folded.backbone.switch_to_deploy()
    models = {
        'unfolded': unfolded.to(dev).eval(),
        'folded': folded.to(dev).eval()
    }
    x = torch.randn(batch, 3, img_size, img_size, device=dev)

    def forward(model):
        with torch.inference_mode():
            return model(x, mode='tensor')

    logits = {k: forward(m) for k, m in models.items()}
    if not (logits['unfolded'] -
            logits['folded']).abs().max() <= 1e-4 * logits['unfolded'].abs(
            ).max():  # else the speed-up is of a wrong model
        raise RuntimeError(
            'the folded model\'s logits differ from the unfolded ones')
    runners = [Runner(k, lambda m=m: forward(m)) for k, m in models.items()]
    time_interleaved(runners, warmup, steps, dev)
    small = torch.randn(1, 3, 64, 64, device=dev)
    return dict(
        env=machine_info(dev),
        settings=settings,
        results={r.name: summary(r, batch)
                 for r in runners},
        speedup_folded=paired_ratio(runners[0].times, runners[1].times),
        max_abs_logit_diff=float(
            (logits['unfolded'] - logits['folded']).abs().max()),
        max_abs_logit=float(logits['unfolded'].abs().max()),
        aten_ops_per_forward={
            k: count_aten_ops(m.backbone, small)
            for k, m in models.items()
        })


def onnx_folding(config,
                 checkpoint,
                 shape=None,
                 batch=1,
                 runs=10,
                 threads=1,
                 opset=17,
                 img=DEMO_IMAGE) -> dict:
    """onnxruntime latency of ``config``'s model exported with and without WS
    folding (each checked against PyTorch), ORT graph optimisations on and
    off; per-graph results and the paired speed-ups ``unfolded / folded``."""
    import onnxruntime

    tmp = tempfile.TemporaryDirectory()
    report = dict(
        env=machine_info(torch.device('cpu')),
        settings=dict(
            config=config,
            checkpoint=checkpoint,
            batch=batch,
            runs=runs,
            threads=threads,
            opset=opset),
        results={})
    report['env']['versions']['onnxruntime'] = onnxruntime.__version__
    runners = []
    for fold in (True, False):
        name = 'folded' if fold else 'unfolded'
        path = osp.join(tmp.name, f'{name}.onnx')
        rep = export_and_check(
            config,
            checkpoint,
            path,
            img,
            fold=fold,
            opset=opset,
            shape=shape,
            dynamic_batch=batch > 1,
            threads=threads)
        inputs = np.random.default_rng(0).standard_normal(
            [batch] + rep['input_shape'][1:]).astype(np.float32)
        for opt in (True, False):
            key = name + ('' if opt else ' (ORT opt off)')
            start = time.perf_counter()
            sess = ort_session(path, threads, opt)
            report['results'][key] = dict(
                max_abs_diff=rep['max_abs_diff'],
                num_nodes=rep['num_nodes'],
                ops=rep['ops'],
                ort_graph_optimizations=opt,
                session_create_ms=(time.perf_counter() - start) * 1e3)
            runners.append(
                Runner(
                    key,
                    lambda s=sess, x=inputs: s.run(
                        None, {s.get_inputs()[0].name: x})))
    time_interleaved(runners, 2, runs, torch.device('cpu'))
    by_name = {r.name: r for r in runners}
    for r in runners:
        report['results'][r.name].update(summary(r, batch))
    for suffix in ('', ' (ORT opt off)'):
        report[f'speedup_folded{suffix}'] = paired_ratio(
            by_name['unfolded' + suffix].times,
            by_name['folded' + suffix].times)
    tmp.cleanup()
    return report

"""Tests of SAM (NFNet paper appendix A.4): the two-pass step, DDP, AMP, the
Runner."""
import copy
import math
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from helpers import TESTS, build_sam_model, sam_batch, sam_model_cfg
from mmengine.optim import OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS
from torch.func import functional_call

from nfnet_mm.engine.optimizers import (AmpSAMOptimWrapper, SAMOptimWrapper,
                                        amp_optim_wrapper_type)
from nfnet_mm.models.utils import sam_train_step

RHO = 0.05
LR = 0.1


# --------------------------------------------------------------- the oracle
def _loss(model, params, inputs, samples):
    """Total loss of ``model`` with ``params`` substituted (mmengine's rule:
    keys with 'loss' are summed)."""
    losses = functional_call(model, params, (inputs, samples),
                             {'mode': 'loss'})
    return sum(value for key, value in losses.items() if 'loss' in key)


def reference_sam_grad(model,
                       inputs,
                       samples,
                       ascent_size,
                       adaptive=False,
                       w=None,
                       ascent=None):
    """Descent gradient of SAM written out plainly: g on the first
    ``ascent_size`` samples at w; e = rho g/||g|| (ASAM: rho |w|^2 g /
    || |w| g ||); gradient of the whole ``inputs`` at w + e. Returns (grads by
    name, descent loss, ||g||). ``ascent``: other (inputs, samples) whose
    first ``ascent_size`` give g."""
    a_inputs, a_samples = ascent or (inputs, samples)
    if w is None:
        w = {n: p.detach().clone() for n, p in model.named_parameters()}
    names = list(w)
    leaves = {n: w[n].clone().requires_grad_(True) for n in names}
    ascent_loss = _loss(model, leaves, a_inputs[:ascent_size],
                        a_samples[:ascent_size])
    g = torch.autograd.grad(ascent_loss, [leaves[n] for n in names])
    g_norm = torch.sqrt(sum((gi**2).sum() for gi in g))
    if adaptive:
        tg = [w[n].abs() * gi for n, gi in zip(names, g)]
        t_norm = torch.sqrt(sum((t**2).sum() for t in tg))
        e = [RHO * w[n].abs() * t / t_norm for n, t in zip(names, tg)]
    else:
        e = [RHO * gi / g_norm for gi in g]
    perturbed = {
        n: (w[n] + ei).requires_grad_(True)
        for n, ei in zip(names, e)
    }
    descent_loss = _loss(model, perturbed, inputs, samples)
    gd = torch.autograd.grad(descent_loss, [perturbed[n] for n in names])
    return dict(zip(names, gd)), descent_loss.detach(), g_norm


def _preprocessed(model, batch_size, seed):
    data = model.data_preprocessor(sam_batch(batch_size, seed), True)
    return data['inputs'], data['data_samples']


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _sam_wrapper(model, **kwargs):
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    kwargs.setdefault('rho', RHO)
    return SAMOptimWrapper(optimizer=optimizer, **kwargs)


# ------------------------------------------------------------------- tests
@pytest.mark.parametrize('adaptive', [False, True])
def test_sam_step_matches_reference(adaptive):
    model = build_sam_model()
    wrapper = _sam_wrapper(model, adaptive=adaptive, ascent_fraction=0.2)
    w0 = _snapshot(model)
    inputs, samples = _preprocessed(model, 10, seed=1)
    ref_grads, ref_loss, ref_norm = reference_sam_grad(
        model, inputs, samples, ascent_size=2, adaptive=adaptive)

    log_vars = model.train_step(sam_batch(10, seed=1), wrapper)

    for name, p in model.named_parameters():
        expected = w0[name] - LR * ref_grads[name]
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-6)
    assert not wrapper.is_perturbed
    torch.testing.assert_close(
        log_vars['loss'], ref_loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(
        log_vars['sam_ascent_grad_norm'], ref_norm, rtol=1e-5, atol=1e-7)
    assert float(log_vars['sam_skipped']) == 0
    assert wrapper.inner_count == 1


def test_ascent_on_another_batch_matches_reference():
    """``ascent_data``: g on the other batch's first samples, descent on
    this batch (A.4's negative control)."""
    model = build_sam_model()
    wrapper = _sam_wrapper(model, ascent_fraction=0.2)
    w0 = _snapshot(model)
    inputs, samples = _preprocessed(model, 10, seed=1)
    other = _preprocessed(model, 10, seed=2)
    ref_grads, ref_loss, _ = reference_sam_grad(
        model, inputs, samples, ascent_size=2, ascent=other)
    own_grads, _, _ = reference_sam_grad(model, inputs, samples, 2)

    log_vars = sam_train_step(
        model, sam_batch(10, 1), wrapper, ascent_data=sam_batch(10, 2))

    for name, p in model.named_parameters():
        expected = w0[name] - LR * ref_grads[name]
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(log_vars['loss'], ref_loss, rtol=1e-6,
                               atol=1e-6)
    assert any(not torch.allclose(ref_grads[n], own_grads[n], atol=1e-6)
               for n in ref_grads)


def test_sam_differs_from_plain_step():
    """The perturbation matters: the SAM update is not the plain-SGD update."""
    model = build_sam_model()
    plain_model = copy.deepcopy(model)
    model.train_step(
        sam_batch(10, 1), _sam_wrapper(model, ascent_fraction=1.0))
    plain_model.train_step(
        sam_batch(10, 1),
        OptimWrapper(torch.optim.SGD(plain_model.parameters(), lr=LR)))
    diff = max((a - b).abs().max().item()
               for a, b in zip(model.parameters(), plain_model.parameters()))
    assert diff > 1e-5


@pytest.mark.parametrize('fraction,batch,expected', [(0.2, 10, 2), (0.2, 7, 2),
                                                     (0.2, 1, 1), (0.3, 10, 3),
                                                     (1.0, 6, 6), (0.5, 5, 3)])
def test_ascent_size_is_ceil(fraction, batch, expected):
    wrapper = _sam_wrapper(build_sam_model(), ascent_fraction=fraction)
    assert wrapper.ascent_size(batch) == expected


def test_preprocessing_and_batch_augments_run_once():
    """Both passes see one augmented batch; the ascent uses its first
    samples."""
    model = build_sam_model(
        batch_augments=dict(augments=dict(type='Mixup', alpha=1.0)))
    wrapper = _sam_wrapper(model, ascent_fraction=0.3)
    seen, calls = [], []
    model.backbone.register_forward_pre_hook(
        lambda m, args: seen.append(args[0]))
    real_forward = model.data_preprocessor.forward

    def counting_forward(*args, **kwargs):
        calls.append(1)
        return real_forward(*args, **kwargs)

    with mock.patch.object(model.data_preprocessor, 'forward',
                           counting_forward):
        model.train_step(sam_batch(10, 2), wrapper)
    assert len(calls) == 1
    assert [x.shape[0] for x in seen] == [3, 10]
    torch.testing.assert_close(seen[0], seen[1][:3], rtol=0, atol=0)
    # Mixup did change the inputs (so the test would see a second draw).
    raw = sam_batch(10, 2)['inputs']
    assert not torch.allclose(seen[1], raw)


def test_weights_restored_when_descent_raises():
    model = build_sam_model()
    wrapper = _sam_wrapper(model)
    w0 = _snapshot(model)
    forwards = []

    def fail_on_descent(module, args):
        forwards.append(1)
        if len(forwards) == 2:
            raise RuntimeError('descent failed')

    model.backbone.register_forward_pre_hook(fail_on_descent)
    with pytest.raises(RuntimeError, match='descent failed'):
        model.train_step(sam_batch(10, 3), wrapper)
    assert not wrapper.is_perturbed
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), w0[name], rtol=0, atol=0)


def test_gradient_accumulation_perturbs_each_micro_batch():
    """accumulative_counts=2 mimics two replicas (paper A.4): each micro-batch
    perturbs the same w with its own ascent (not polluted by the gradient
    accumulated so far); the optimizer steps once with the mean of the two
    descent gradients."""
    model = build_sam_model()
    wrapper = _sam_wrapper(model, ascent_fraction=0.2, accumulative_counts=2)
    w0 = _snapshot(model)
    refs = [
        reference_sam_grad(model, *_preprocessed(model, 10, seed), 2)[0]
        for seed in (5, 6)
    ]
    model.train_step(sam_batch(10, 5), wrapper)
    for name, p in model.named_parameters(
    ):  # no step after the first micro-batch
        torch.testing.assert_close(p.detach(), w0[name], rtol=0, atol=0)
    model.train_step(sam_batch(10, 6), wrapper)
    for name, p in model.named_parameters():
        grad = (refs[0][name] + refs[1][name]) / 2
        torch.testing.assert_close(
            p.detach(), w0[name] - LR * grad, rtol=0, atol=1e-6)
    assert wrapper.inner_count == 2


def test_non_finite_ascent_skips_perturbation():
    """A non-finite ascent gradient: no perturbation, the descent runs at w."""
    model = build_sam_model()
    wrapper = _sam_wrapper(model)
    w0 = _snapshot(model)
    inputs, samples = _preprocessed(model, 10, seed=7)
    leaves = {n: v.clone().requires_grad_(True) for n, v in w0.items()}
    plain = torch.autograd.grad(
        _loss(model, leaves, inputs, samples), list(leaves.values()))
    backwards = []

    def poison_first_backward(grad):
        backwards.append(1)
        return grad * float('inf') if len(backwards) == 1 else grad

    model.head.fc.bias.register_hook(poison_first_backward)
    log_vars = model.train_step(sam_batch(10, 7), wrapper)
    assert float(log_vars['sam_skipped']) == 1
    assert not math.isfinite(float(log_vars['sam_ascent_grad_norm']))
    for (name, p), g in zip(model.named_parameters(), plain):
        torch.testing.assert_close(
            p.detach(), w0[name] - LR * g, rtol=0, atol=1e-6)


def test_plain_wrapper_falls_back_to_normal_step():
    model = build_sam_model()
    reference = build_sam_model('ImageClassifier')
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=LR))
    ref_wrapper = OptimWrapper(torch.optim.SGD(reference.parameters(), lr=LR))
    log_vars = model.train_step(sam_batch(10, 8), wrapper)
    reference.train_step(sam_batch(10, 8), ref_wrapper)
    assert 'sam_ascent_grad_norm' not in log_vars
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_one_pass_step_with_sam_wrapper_is_refused():
    model = build_sam_model('ImageClassifier')
    with pytest.raises(RuntimeError, match='SAMImageClassifier'):
        model.train_step(sam_batch(4, 0), _sam_wrapper(model))
    with pytest.raises(TypeError, match='SAM optimizer wrapper'):
        sam_train_step(
            model, sam_batch(4, 0),
            OptimWrapper(torch.optim.SGD(model.parameters(), lr=LR)))


@pytest.mark.parametrize('kwargs,match', [
    (dict(rho=0), 'rho'),
    (dict(rho=-0.1), 'rho'),
    (dict(ascent_fraction=0), 'ascent_fraction'),
    (dict(ascent_fraction=1.5), 'ascent_fraction'),
    (dict(adaptive='yes'), 'adaptive'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _sam_wrapper(build_sam_model(), **kwargs)


def test_registry_and_amp_variant():
    assert OPTIM_WRAPPERS.get('SAMOptimWrapper') is SAMOptimWrapper
    assert OPTIM_WRAPPERS.get('AmpSAMOptimWrapper') is AmpSAMOptimWrapper
    assert amp_optim_wrapper_type('SAMOptimWrapper') == 'AmpSAMOptimWrapper'
    assert amp_optim_wrapper_type('AmpSAMOptimWrapper') == 'AmpSAMOptimWrapper'


# ---------------------------------------------------------------------- AMP
def _cpu_amp_wrapper(model, init_scale=2.0**12, **kwargs):
    """AmpSAMOptimWrapper on CPU: bf16 autocast and a CPU GradScaler that
    really scales (MMEngine refuses AMP without an accelerator, so that check
    is patched)."""
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_module
    with mock.patch.object(amp_module, 'is_cuda_available', return_value=True):
        wrapper = AmpSAMOptimWrapper(
            optimizer=torch.optim.SGD(model.parameters(), lr=LR),
            rho=RHO,
            dtype='bfloat16',
            **kwargs)
    wrapper.loss_scaler = torch.amp.GradScaler(
        'cpu', init_scale=init_scale, growth_interval=1000)
    return wrapper


@pytest.mark.parametrize('agc', [None, dict(clipping=0.01)])
def test_amp_loss_scaler_used_once_per_update(agc):
    model = build_sam_model()
    fp32_model = copy.deepcopy(model)
    wrapper = _cpu_amp_wrapper(model, agc=agc)
    scaler = wrapper.loss_scaler
    with mock.patch.object(scaler, 'step', wraps=scaler.step) as step, \
            mock.patch.object(
                scaler, 'update', wraps=scaler.update) as update, \
            mock.patch.object(
                scaler, 'unscale_', wraps=scaler.unscale_) as unscale:
        log_vars = model.train_step(sam_batch(10, 9), wrapper)
    assert step.call_count == update.call_count == 1
    # the descent grads, once (AGC or scaler.step)
    assert unscale.call_count == 1
    assert wrapper.loss_scaler.get_scale() == 2.0**12  # no overflow seen
    fp32_log = fp32_model.train_step(
        sam_batch(10, 9), _sam_wrapper(fp32_model, agc=agc))
    # The logged ascent norm is unscaled (bf16 forward: a loose tolerance).
    ratio = float(log_vars['sam_ascent_grad_norm']) / float(
        fp32_log['sam_ascent_grad_norm'])
    assert 0.9 < ratio < 1.1
    for p, q in zip(model.parameters(), fp32_model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=5e-3)


def test_amp_ascent_overflow_skips_perturbation_not_scale():
    """An inf ascent gradient skips the perturbation; the scaler (which only
    sees the descent gradients) does not back off."""
    model = build_sam_model()
    w0 = _snapshot(model)
    wrapper = _cpu_amp_wrapper(model)
    backwards = []

    def poison_first_backward(grad):
        backwards.append(1)
        return grad * float('inf') if len(backwards) == 1 else grad

    model.head.fc.bias.register_hook(poison_first_backward)
    log_vars = model.train_step(sam_batch(10, 10), wrapper)
    assert float(log_vars['sam_skipped']) == 1
    assert wrapper.loss_scaler.get_scale() == 2.0**12
    assert not wrapper.is_perturbed
    changed = any(not torch.equal(p.detach(), w0[n])
                  for n, p in model.named_parameters())
    assert changed  # the descent step did happen


@pytest.mark.cuda
def test_amp_fp16_step_on_cuda():
    model = build_sam_model().cuda()
    wrapper = AmpSAMOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=LR),
        rho=RHO,
        dtype='float16',
        loss_scale=dict(init_scale=2.0**10))
    w0 = _snapshot(model)
    log_vars = model.train_step(sam_batch(10, 12), wrapper)
    assert not wrapper.is_perturbed
    assert float(log_vars['sam_skipped']) == 0
    assert float(log_vars['sam_ascent_grad_norm']) > 0
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert any(not torch.equal(p.detach(), w0[n])
               for n, p in model.named_parameters())


# ---------------------------------------------------------------------- AGC
def test_sam_with_agc_clips_descent_gradient():
    """AGC (eq. 3) is applied to the descent gradient, written out plainly
    here: unit-wise ratio ||G_i|| / max(||W_i||, eps) capped at lambda; vectors
    are one unit; the classifier weight is excluded."""
    clipping, eps = 0.01, 1e-3
    model = build_sam_model()
    wrapper = _sam_wrapper(
        model,
        agc=dict(clipping=clipping, eps=eps, exclude=['head.fc.weight']))
    w0 = _snapshot(model)
    inputs, samples = _preprocessed(model, 10, seed=11)
    ref_grads, _, _ = reference_sam_grad(model, inputs, samples, 2)
    model.train_step(sam_batch(10, 11), wrapper)
    n_clipped = 0
    for name, p in model.named_parameters():
        g, w = ref_grads[name], w0[name]
        if name != 'head.fc.weight':
            # rows of matrices/kernels; a vector or scalar is one unit
            dims = tuple(range(1, g.dim())) if g.dim() > 1 else None
            w_norm = torch.linalg.vector_norm(
                w, dim=dims, keepdim=True).clamp(min=eps)
            g_norm = torch.linalg.vector_norm(g, dim=dims, keepdim=True)
            cap = clipping * w_norm
            n_clipped += int((g_norm > cap).sum())
            g = torch.where(g_norm > cap, g * cap / g_norm.clamp(min=1e-6), g)
        torch.testing.assert_close(
            p.detach(), w - LR * g, rtol=1e-5, atol=1e-6)
    assert n_clipped > 0  # the test exercises clipping


# ---------------------------------------------------------------------- DDP
DDP_WORKER = Path(__file__).parent / 'sam_ddp_worker.py'


@pytest.mark.slow
@pytest.mark.parametrize('bucket_view', [False, True])
def test_ddp_two_processes_gloo(bucket_view):
    """2 CPU processes: ascent not synced (different perturbations), descent
    gradient = all-rank average of the local descent gradients at the local
    perturbed points, parameters identical across ranks after 3 steps; with
    and without DDP's ``gradient_as_bucket_view`` (SAM stashes and restores
    the gradient tensors).

    The worker script spawns the ranks and checks these in each; it imports
    :mod:`helpers` through ``PYTHONPATH`` (and this module from its folder).
    """
    pythonpath = [TESTS] + os.environ.get('PYTHONPATH', '').split(os.pathsep)
    proc = subprocess.run([sys.executable, str(DDP_WORKER)] +
                          ['--bucket-view'] * bucket_view,
                          capture_output=True,
                          text=True,
                          timeout=600,
                          env=dict(
                              os.environ,
                              OMP_NUM_THREADS='1',
                              PYTHONPATH=os.pathsep.join(
                                  filter(None, pythonpath))))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert proc.stdout.splitlines()[-1:] == ['ranks passed: 2'], proc.stdout


# ------------------------------------------------------------------- Runner
@pytest.mark.slow
def test_runner_trains_with_sam(tmp_path):
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config(
        dict(
            default_scope='mmpretrain',
            work_dir=str(tmp_path),
            model=sam_model_cfg('SAMImageClassifier'),
            train_dataloader=dict(
                batch_size=5,
                num_workers=0,
                sampler=dict(type='DefaultSampler', shuffle=True),
                collate_fn=dict(type='pseudo_collate'),
                dataset=dict(type='SAMFakeClsDataset', length=20)),
            train_cfg=dict(by_epoch=False, max_iters=3),
            optim_wrapper=dict(
                type='SAMOptimWrapper',
                rho=RHO,
                ascent_fraction=0.2,
                optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
            default_hooks=dict(
                logger=dict(type='LoggerHook', interval=1),
                checkpoint=dict(type='CheckpointHook', interval=1000)),
            log_level='WARNING',
        ))
    runner = Runner.from_cfg(cfg)
    w0 = _snapshot(runner.model)
    runner.train()
    assert runner.iter == 3
    hub = runner.message_hub
    for key in ('train/loss', 'train/sam_ascent_grad_norm',
                'train/sam_ascent_loss'):
        assert len(hub.get_scalar(key).data[0]) == 3, key
    assert hub.get_scalar('train/sam_ascent_grad_norm').current() > 0
    assert any(not torch.equal(p.detach(), w0[n])
               for n, p in runner.model.named_parameters())

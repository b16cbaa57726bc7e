"""Tests of Adaptive Gradient Clipping (eq. 3) as MMEngine optimizer
wrappers."""
import copy
import logging
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import (AGCTestNet, agc_batches, agc_ddp_worker, agc_train_steps,
                     free_port, reference_agc)
from mmengine.logging import MessageHub, MMLogger
from mmengine.optim import OptimWrapper

from nfnet_mm.engine.optimizers import (AGCOptimWrapper, AmpAGCOptimWrapper,
                                        amp_optim_wrapper_type)

CLIP, EPS = 0.01, 1e-3


class ParamBag(nn.Module):
    """Parameters of every rank, incl. zero-initialised ones (the eps path)."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)

        def param(*shape, scale=1.):
            return nn.Parameter(torch.randn(shape, generator=gen) * scale)

        self.scalar = param(scale=0.3)  # 0-d, e.g. a skip gain
        self.zero_scalar = nn.Parameter(torch.zeros(()))  # SkipInit at init
        self.vector = param(16)  # 1-d: a bias or a per-channel gain
        self.zero_vector = nn.Parameter(torch.zeros(16))
        self.linear = param(12, 20, scale=0.1)  # Linear [out, in]
        self.conv = param(6, 5, 3, 3, scale=0.1)  # conv [O, I, kh, kw]
        self.gconv = param(8, 2, 3, 3, scale=0.1)  # grouped conv, I/g = 2
        self.zero_conv = nn.Parameter(torch.zeros(4, 3, 1, 1))
        self.conv_cl = param(6, 4, 3, 3, scale=0.1)  # channels_last gradient


def _set_unit_grads(bag: ParamBag, seed: int = 1) -> None:
    """Give every unit a gradient of a chosen ratio: below, above or zero."""
    gen = torch.Generator().manual_seed(seed)
    ratios = [0.2 * CLIP, 5 * CLIP, 0.5 * CLIP, 40 * CLIP, 0.]
    k = 0
    for name, p in bag.named_parameters():
        units = [p.detach().reshape(1, -1)] if p.ndim <= 1 else [
            p.detach()[i].reshape(1, -1) for i in range(p.shape[0])
        ]
        rows = []
        for w_i in units:
            direction = torch.randn(w_i.shape, generator=gen)
            # zero weights (the eps path) get ratios far above the threshold
            ratio = 40 * CLIP if name.startswith('zero') else ratios[k % 5]
            target = ratio * max(w_i.norm().item(), EPS)
            rows.append(direction / direction.norm() * target)
            k += 1
        grad = torch.cat(rows).reshape(p.shape)
        if name == 'conv_cl':
            grad = grad.contiguous(memory_format=torch.channels_last)
        p.grad = grad


def _wrapper(params, agc=None, lr=0.1, momentum=0.9, **kwargs):
    return AGCOptimWrapper(
        torch.optim.SGD(params, lr=lr, momentum=momentum), agc=agc, **kwargs)


@pytest.fixture
def log_records():
    """Records written through MMEngine's current logger (print_log)."""
    records = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


# ---------------------------------------------------------------- semantics
def test_matches_unitwise_reference_for_every_rank():
    bag = ParamBag()
    _set_unit_grads(bag)
    names = [n for n, _ in bag.named_parameters()]
    params = list(bag.parameters())
    expected, frac, max_ratio = reference_agc(params, [p.grad for p in params],
                                              CLIP, EPS)
    assert 0 < frac < 1  # units above and below the threshold

    wrapper = _wrapper(params, agc=dict(clipping=CLIP, eps=EPS, exclude=[]))
    stats = wrapper.agc_clip_()
    for name, p, want in zip(names, params, expected):
        torch.testing.assert_close(
            p.grad.double(), want, rtol=1e-6, atol=1e-12, msg=name)
    _, got_frac, got_max = stats.tolist()
    assert got_frac == pytest.approx(frac, rel=1e-6)
    assert got_max == pytest.approx(max_ratio, rel=1e-5)
    # eps path: zero weights get their gradient norm clipped to clipping * eps
    for p in (bag.zero_scalar, bag.zero_vector):
        assert p.grad.norm().item() == pytest.approx(CLIP * EPS, 1e-5)
    for i in range(4):
        assert bag.zero_conv.grad[i].norm().item() == pytest.approx(
            CLIP * EPS, 1e-5)
    # clipping is idempotent: a second pass leaves the gradients alone
    before = [p.grad.clone() for p in params]
    wrapper.agc_clip_()
    for b, p in zip(before, params):
        torch.testing.assert_close(p.grad, b, rtol=1e-5, atol=0)


def test_linear_rows_are_output_units():
    """A Linear [out, in] is clipped per output row, not per input column."""
    lin = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.ones(3,
                                    4))  # every row norm 2, column norm sqrt 3
    grad = torch.zeros(3, 4)
    grad[1] = 1.  # row 1: ratio 1 (clipped); columns: ratio 1 / sqrt(3) each
    lin.weight.grad = grad.clone()
    _wrapper([lin.weight], agc=dict(clipping=0.1, exclude=[])).agc_clip_()
    assert lin.weight.grad[1].norm().item() == pytest.approx(0.2, rel=1e-6)
    assert torch.equal(lin.weight.grad[[0, 2]], torch.zeros(2, 4))


def test_config_validation():
    params = [nn.Parameter(torch.ones(2))]
    with pytest.raises(ValueError, match='clipping'):
        _wrapper(params, agc=dict(eps=1e-3))
    with pytest.raises(ValueError, match="'lambda'"):
        _wrapper(params, agc=dict(clipping=0.01, **{'lambda': 1}))
    with pytest.raises(ValueError, match='eps must be > 0'):
        _wrapper(params, agc=dict(clipping=0.01, eps=0))
    with pytest.raises(ValueError, match="must be > 0.*'clipping': '0.01'"):
        _wrapper(params, agc=dict(clipping='0.01'))
    with pytest.raises(
            ValueError, match="exclude must be a list.*'head.fc.weight'"):
        _wrapper(params, agc=dict(clipping=0.01, exclude='head.fc.weight'))
    with pytest.raises(ValueError, match='max_consecutive_skips'):
        _wrapper(params, agc=dict(clipping=0.01), max_consecutive_skips=0)
    wrapper = _wrapper(params, agc=dict(clipping=0.02))
    assert wrapper.agc == dict(
        clipping=0.02, eps=1e-3, exclude=['head.fc.weight'])


# --------------------------------------------------------------- exclusion
def _grads_after_step(model, wrapper):
    """Raw gradients of one batch, and the gradients after ``step()``."""
    x, y = agc_batches(1, 4)[0]
    with wrapper.optim_context(model):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    raw = {n: p.grad.clone() for n, p in model.named_parameters()}
    wrapper.step()
    return raw, {n: p.grad.clone() for n, p in model.named_parameters()}


def test_default_exclusion_is_classifier_weight_only():
    model = AGCTestNet()
    wrapper = _wrapper(model.parameters(), agc=dict(clipping=1e-4))
    raw, clipped = _grads_after_step(model, wrapper)
    assert torch.equal(clipped['head.fc.weight'], raw['head.fc.weight'])
    for name in ('head.fc.bias', 'conv.weight', 'conv.bias', 'gconv.weight',
                 'gain', 'skip_gain'):
        assert not torch.equal(clipped[name], raw[name]), name


def test_custom_exclusion_with_pattern():
    model = AGCTestNet()
    wrapper = _wrapper(
        model.parameters(),
        agc=dict(clipping=1e-4, exclude=['conv.*', 'gain']))
    raw, clipped = _grads_after_step(model, wrapper)
    for name in ('conv.weight', 'conv.bias', 'gain'):
        assert torch.equal(clipped[name], raw[name]), name
    for name in ('head.fc.weight', 'gconv.weight', 'skip_gain'):
        assert not torch.equal(clipped[name], raw[name]), name


def test_exclusion_matching_nothing_fails_before_any_update():
    model = AGCTestNet()
    before = copy.deepcopy(model.state_dict())
    wrapper = _wrapper(
        model.parameters(),
        agc=dict(clipping=0.01, exclude=['head.fc.weigth']))
    with pytest.raises(
            ValueError, match=r"'head\.fc\.weigth' matches no") as e:
        agc_train_steps(wrapper, model, agc_batches(1, 4))
    assert 'head.fc.weight' in str(e.value)  # the closest name is offered
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_step_without_names_is_a_clear_error():
    model = AGCTestNet()
    wrapper = _wrapper(model.parameters(), agc=dict(clipping=0.01))
    F.cross_entropy(
        model(agc_batches(1, 2)[0][0]),
        torch.zeros(2, dtype=torch.long)).backward()
    with pytest.raises(RuntimeError, match='bind_model'):
        wrapper.step()
    # an empty exclusion list needs no names
    _wrapper(model.parameters(), agc=dict(clipping=0.01, exclude=[])).step()


def test_bind_strips_model_wrapper_prefix():
    model = AGCTestNet()
    wrapped = nn.DataParallel(model)  # a registered model wrapper: module.*
    wrapper = _wrapper(wrapped.parameters(), agc=dict(clipping=0.01))
    wrapper.bind_model(wrapped)
    assert sorted(wrapper.param_names.values()) == sorted(
        n for n, _ in model.named_parameters())


# ------------------------------------------------------------ plain / amp map
def test_agc_none_is_plain_optim_wrapper():
    torch.manual_seed(0)
    model_a, batches = AGCTestNet(), agc_batches(3, 4)
    model_b = copy.deepcopy(model_a)
    hub = MessageHub.get_instance('agc_none_test')
    plain = OptimWrapper(torch.optim.SGD(model_a.parameters(), lr=0.1))
    ours = _wrapper(model_b.parameters(), agc=None, momentum=0)
    agc_train_steps(plain, model_a, batches)
    agc_train_steps(ours, model_b, batches)
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)
    assert 'train/agc_clip_frac' not in hub.log_scalars


def test_clip_grad_applies_after_agc():
    """MMEngine's clip_grad composes with AGC: AGC first, then the total
    norm."""
    torch.manual_seed(0)
    model = AGCTestNet()
    x, y = agc_batches(1, 4)[0]
    weights, raw = _raw_grads(model, x, y)
    wrapper = _wrapper(
        model.parameters(),
        agc=dict(clipping=CLIP, exclude=[]),
        clip_grad=dict(max_norm=1e-4))
    seen = _spy_step(wrapper)
    wrapper.update_params(F.cross_entropy(model(x), y))
    expected, _, _ = reference_agc(weights, raw, CLIP, EPS)
    total = torch.stack([g.norm() for g in expected]).norm()
    assert total > 1e-4  # the norm clip is active after AGC
    for got, want in zip(seen[0], expected):
        # torch.nn.utils.clip_grad_norm_ divides by (total norm + 1e-6)
        torch.testing.assert_close(
            got.double(), want * 1e-4 / (total + 1e-6), rtol=1e-5, atol=1e-12)


def test_amp_variant():
    assert amp_optim_wrapper_type('AGCOptimWrapper') == 'AmpAGCOptimWrapper'
    assert amp_optim_wrapper_type('AmpAGCOptimWrapper') == 'AmpAGCOptimWrapper'


# ------------------------------------------------------------ accumulation
def test_accumulation_equals_double_batch():
    """accumulative_counts=2 on two halves == one step on the full batch.

    Tolerance: rtol 1e-5 / atol 1e-6 (float32 summation order differs).
    """
    torch.manual_seed(0)
    model_a = AGCTestNet()
    model_b = copy.deepcopy(model_a)
    full = agc_batches(3, 8)
    halves = [(x[s], y[s]) for x, y in full
              for s in (slice(0, 4), slice(4, 8))]
    agc = dict(clipping=CLIP)
    acc = _wrapper(
        model_a.parameters(), agc=agc, lr=0.5, accumulative_counts=2)
    one = _wrapper(model_b.parameters(), agc=agc, lr=0.5)
    calls = []
    clip = acc.agc_clip_
    acc.agc_clip_ = lambda: calls.append(acc._inner_count) or clip()
    fracs = agc_train_steps(acc, model_a, halves)
    agc_train_steps(one, model_b, full)
    assert calls == [2, 4, 6]  # clipped once per update, on the summed grads
    assert fracs[-1] > 0  # clipping was active
    for (name, pa), pb in zip(model_a.named_parameters(),
                              model_b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)


# --------------------------------------------------------------------- DDP
@pytest.mark.slow
@pytest.mark.parametrize('bucket_view', [False, True])
def test_ddp_two_ranks_gloo(tmp_path, bucket_view):
    steps, batch, agc = 3, 8, dict(clipping=CLIP)
    torch.multiprocessing.spawn(
        agc_ddp_worker,
        args=(2, free_port(), str(tmp_path), steps, batch, agc, bucket_view),
        nprocs=2,
        join=True)
    ranks = [torch.load(tmp_path / f'rank{r}.pt') for r in range(2)]
    torch.manual_seed(0)
    model = AGCTestNet()
    single = _wrapper(model.parameters(), agc=agc, lr=0.5)
    fracs = agc_train_steps(single, model, agc_batches(steps, batch))
    assert ranks[0]['fracs'] == ranks[1]['fracs']
    assert min(ranks[0]['fracs']) > 0  # clipping was active on every step
    assert ranks[0]['fracs'] == pytest.approx(fracs, abs=1e-6)
    for name, p in model.named_parameters():
        assert torch.equal(ranks[0]['params'][name], ranks[1]['params'][name])
        torch.testing.assert_close(
            ranks[0]['params'][name],
            p.detach(),
            rtol=1e-5,
            atol=1e-6,
            msg=name)


# -------------------------------------------------------------- non-finite
def test_non_finite_gradient_skips_update(log_records):
    torch.manual_seed(0)
    model = AGCTestNet()
    wrapper = _wrapper(model.parameters(), agc=dict(clipping=CLIP))
    agc_train_steps(wrapper, model, agc_batches(1, 4))  # momentum state exists
    weights = copy.deepcopy(model.state_dict())
    state = copy.deepcopy(wrapper.optimizer.state_dict())
    x, y = agc_batches(1, 4, seed=2)[0]
    with wrapper.optim_context(model):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    model.head.fc.weight.grad[0, 0] = float('inf')  # excluded, still checked
    wrapper.step()
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    after = wrapper.optimizer.state_dict()['state']
    for idx, st in state['state'].items():
        assert torch.equal(after[idx]['momentum_buffer'],
                           st['momentum_buffer'])
    assert all(p.grad is None for p in model.parameters())
    assert wrapper.consecutive_skips == 1
    assert any('non-finite gradient' in r.getMessage() for r in log_records)
    # a good step resets the run of skips and moves the weights
    agc_train_steps(wrapper, model, agc_batches(1, 4, seed=3))
    assert wrapper.consecutive_skips == 0
    assert not torch.equal(model.conv.weight, weights['conv.weight'])


def test_consecutive_non_finite_steps_stop_training():
    model = AGCTestNet()
    wrapper = _wrapper(
        model.parameters(), agc=dict(clipping=CLIP), max_consecutive_skips=3)
    wrapper.bind_model(model)
    for i in range(3):
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        model.conv.weight.grad[0] = float('nan')
        if i < 2:
            wrapper.step()
        else:
            with pytest.raises(RuntimeError, match='3 consecutive updates'):
                wrapper.step()


# --------------------------------------------------------------------- AMP
@pytest.fixture
def cpu_amp(monkeypatch):
    """Let MMEngine's AmpOptimWrapper be built without CUDA (it asserts
    CUDA)."""
    monkeypatch.setattr(
        'mmengine.optim.optimizer.amp_optimizer_wrapper.is_cuda_available',
        lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch.cuda.amp.GradScaler on CPU
        yield


def _spy_step(wrapper):
    """Record the gradients the optimizer receives."""
    seen, step = [], wrapper.optimizer.step

    def spy(*args, **kwargs):
        grads = [
            p.grad for g in wrapper.optimizer.param_groups for p in g['params']
            if p.grad is not None
        ]
        if grads:  # a skipped update leaves no gradient
            seen.append([g.clone() for g in grads])
        return step(*args, **kwargs)

    wrapper.optimizer.step = spy
    return seen


def _raw_grads(model, x, y, autocast_dtype=None, device='cpu'):
    model = copy.deepcopy(model)
    with torch.autocast(
            device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    return [p.detach().clone() for p in model.parameters()
            ], [p.grad.clone() for p in model.parameters()]


def test_bf16_on_cpu_clips_and_skips(cpu_amp):
    torch.manual_seed(0)
    model = AGCTestNet()
    x, y = agc_batches(1, 4)[0]
    weights, raw = _raw_grads(model, x, y, torch.bfloat16)
    wrapper = AmpAGCOptimWrapper(
        optimizer=torch.optim.SGD(
            model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1),
        dtype='bfloat16',
        agc=dict(clipping=CLIP, exclude=[]))
    assert not wrapper.loss_scaler.is_enabled()  # bf16: no loss scaling
    seen = _spy_step(wrapper)
    with wrapper.optim_context(model):
        logits = model(x)
        assert logits.dtype == torch.bfloat16  # autocast is on
        loss = F.cross_entropy(logits, y)
    wrapper.update_params(loss)
    expected, frac, _ = reference_agc(weights, raw, CLIP, EPS)
    assert frac > 0
    for got, want in zip(seen[0], expected):
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-12)
    # bf16 uses the wrapper's own non-finite handling
    for p in model.parameters():
        p.grad = torch.full_like(p, float('inf'))
    before = copy.deepcopy(model.state_dict())
    momentum = copy.deepcopy(wrapper.optimizer.state_dict()['state'])
    wrapper.step()
    assert len(seen) == 1 and wrapper.consecutive_skips == 1
    for k, v in model.state_dict().items():  # momentum and decay did not act
        assert torch.equal(v, before[k])
    for i, st in wrapper.optimizer.state_dict()['state'].items():
        assert torch.equal(st['momentum_buffer'],
                           momentum[i]['momentum_buffer'])


def test_fp16_loss_scaling_unscales_before_clipping(cpu_amp):
    torch.manual_seed(0)
    model = AGCTestNet()
    x, y = agc_batches(1, 4)[0]
    weights, raw = _raw_grads(model, x, y)
    wrapper = AmpAGCOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        agc=dict(clipping=CLIP, exclude=[]),
        max_consecutive_skips=2)
    # torch.cuda.amp's scaler disables itself without CUDA: use the CPU one
    wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=2.**12)
    wrapper.bind_model(model)
    seen = _spy_step(wrapper)
    wrapper.update_params(F.cross_entropy(model(x), y))
    expected, frac, _ = reference_agc(weights, raw, CLIP, EPS)
    assert frac > 0
    for got, want in zip(seen[0], expected):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-9)
    # overflow: the scaler skips and lowers the scale; no error past the limit
    before = copy.deepcopy(model.state_dict())
    for _ in range(3):
        loss = F.cross_entropy(model(x), y) * float('inf')
        wrapper.update_params(loss)
    assert len(seen) == 1
    assert wrapper.loss_scaler.get_scale() == 2.**9
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.cuda
@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
def test_amp_on_cuda(dtype):
    torch.manual_seed(0)
    model = AGCTestNet().cuda()
    x, y = (t.cuda() for t in agc_batches(1, 4)[0])
    weights, raw = _raw_grads(model, x, y, getattr(torch, dtype), 'cuda')
    wrapper = AmpAGCOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        dtype=dtype,
        agc=dict(clipping=CLIP, exclude=[]),
        # a static scale that cannot overflow this tiny net's fp16 gradients
        loss_scale=1024. if dtype == 'float16' else 'auto')
    assert wrapper.loss_scaler.is_enabled() == (dtype == 'float16')
    seen, pre_clip, clip = _spy_step(wrapper), [], wrapper.agc_clip_

    def spy_clip():
        pre_clip.append([p.grad.clone() for p in model.parameters()])
        return clip()

    wrapper.agc_clip_ = spy_clip
    with wrapper.optim_context(model):
        loss = F.cross_entropy(model(x), y)
    wrapper.update_params(loss)
    assert len(pre_clip) == 1 and len(seen) == 1
    # AGC saw un-scaled gradients (fp16 rounding differs from the raw run)
    raw_norm = torch.stack([g.norm() for g in raw]).norm()
    pre_norm = torch.stack([g.norm() for g in pre_clip[0]]).norm()
    assert pre_norm.item() == pytest.approx(raw_norm.item(), rel=0.05)
    expected, frac, _ = reference_agc(weights, pre_clip[0], CLIP, EPS)
    assert frac > 0
    for got, want in zip(seen[0], expected):
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-12)


# ------------------------------------------------------------------ Runner
@pytest.mark.slow
def test_runner_logs_agc_scalars(tmp_path):
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class ToyModel(BaseModel):

        def __init__(self):
            super().__init__()
            self.net = AGCTestNet()

        def forward(self, inputs, labels=None, mode='tensor'):
            out = self.net(inputs)
            if mode == 'loss':
                return dict(loss=F.cross_entropy(out, labels))
            return out

    x, y = agc_batches(1, 16)[0]
    data = [dict(inputs=x[i], labels=y[i]) for i in range(16)]
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    runner = Runner(
        model=ToyModel(),
        work_dir=str(tmp_path),
        experiment_name='agc_runner_test',
        train_dataloader=loader,
        train_cfg=dict(by_epoch=False, max_iters=4),
        optim_wrapper=dict(
            type='AGCOptimWrapper',
            optimizer=dict(type='SGD', lr=0.1),
            agc=dict(clipping=CLIP, exclude=['net.head.fc.weight'])),
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=1),
            checkpoint=dict(type='CheckpointHook', interval=100)),
        default_scope='mmpretrain',
        log_level='INFO')
    runner.train()
    log = next(tmp_path.rglob('*.log')).read_text()
    assert 'agc_clip_frac' in log and 'agc_max_ratio' in log
    assert 'net.head.fc.weight' in runner.optim_wrapper.param_names.values()

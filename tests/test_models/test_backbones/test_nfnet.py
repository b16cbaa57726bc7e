"""Tests of the NFNet backbone."""
import pytest
import timm
import torch
from helpers import TINY_DEEPER_DIFF, TINY_DIFF, classifier_cfg, randomize_
from mmpretrain.registry import MODELS
from timm.models.nfnet import NormFreeNet, _dm_nfnet_cfg

import nfnet_mm  # noqa: F401
from nfnet_mm.models.backbones.nfnet import (NFNet, NFRegNet, NFResNet,
                                             StochasticDepth)


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize('n', range(7))
def test_param_counts_equal_timm(n):
    with torch.device('meta'):
        ours = MODELS.build(classifier_cfg(f'f{n}'))
        ref = timm.create_model(f'dm_nfnet_f{n}', pretrained=False)
    assert count(ours) == count(ref)
    if n == 0:
        assert count(ours) == 71_489_284


@pytest.mark.slow
def test_f4plus_and_f7_param_counts():
    with torch.device('meta'):
        ours = MODELS.build(classifier_cfg('f4+'))
        ref = NormFreeNet(
            _dm_nfnet_cfg((5, 10, 30, 15), channels=(384, 768, 2048, 2048)))
        f7 = NFNet('f7')
        ref7 = NormFreeNet(_dm_nfnet_cfg((8, 16, 48, 24)))
    # like the reference code, the F4+ stage-1 bottleneck (384 x 0.5 = 192)
    # is rounded down to one group of 128; the paper quotes about 527M
    assert count(ours) == count(ref)
    assert ours.backbone.stages[0][0].conv2.out_channels == 128
    assert count(f7) == count(ref7) - count(ref7.head)
    assert ours.backbone.arch['widths'] == [384, 768, 2048, 2048]
    assert ours.backbone.arch['depths'] == [5, 10, 30, 15]


def test_state_dict_keys_follow_design():
    with torch.device('meta'):
        keys = set(NFNet('f0').state_dict())
    for k in ('stem.conv1.weight', 'stem.conv4.gain', 'stem.conv4.bias',
              'stages.0.0.conv1.weight', 'stages.0.0.conv2.gain',
              'stages.0.0.conv2b.bias', 'stages.0.0.conv3.weight',
              'stages.0.0.se.fc1.weight', 'stages.0.0.se.fc2.bias',
              'stages.0.0.skip_gain', 'stages.0.0.shortcut.conv.weight',
              'stages.3.0.shortcut.conv.gain', 'stages.2.5.conv3.weight',
              'final_conv.weight', 'final_conv.gain'):
        assert k in keys, k
    assert 'stages.0.1.shortcut.conv.weight' not in keys
    assert not any('stages.2.6' in k for k in keys)
    with torch.device('meta'):
        m = NFNet('f0')
    assert m.stages[0][0].skip_gain.shape == ()
    assert m.stages[1][0].conv2.stride == (2, 2)
    assert m.stages[1][0].conv2.groups == 256 // 128
    assert m.stages[0][0].se.fc1.out_features == 128


def test_signal_propagation_constants():
    """beta = 1/expected_std; var starts at 1, + alpha^2 per block, reset to
    1 after each stage's transition block."""
    m = NFNet(TINY_DEEPER_DIFF)
    alpha = 0.2
    expected_var = 1.
    for stage in m.stages:
        for b, block in enumerate(stage):
            assert block.alpha == alpha
            assert block.beta == pytest.approx(expected_var**-0.5)
            if b == 0:
                expected_var = 1.
            expected_var = expected_var + alpha**2
    # gamma (and a block's beta) act as the input_scale of the following
    # conv, in one place: gamma * beta in front of conv1 and the shortcut
    # conv, gamma in front of every other conv but the first stem conv and
    # final_conv (which follow no activation)
    gamma = 1.7015043497085571
    for stage in m.stages:
        for block in stage:
            assert block.conv1.input_scale == pytest.approx(gamma * block.beta)
            if block.shortcut is not None:
                assert block.shortcut.conv.input_scale == pytest.approx(
                    gamma * block.beta)
            for conv in (block.conv2, block.conv2b, block.conv3):
                assert conv.input_scale == pytest.approx(gamma)
    assert [c.input_scale for c in m.stem
            if hasattr(c, 'input_scale')] == [1., gamma, gamma, gamma]
    assert m.final_conv.input_scale == 1.
    betas = [blk.beta for s in m.stages for blk in s]
    # written out: stage 1 block 1 sees 1, block 2 sees 1 + a^2, stage 2's
    # transition block sees 1 + 2 a^2 (one more growth after the reset)
    assert betas[:3] == pytest.approx(
        [1., (1 + alpha**2)**-0.5, (1 + 2 * alpha**2)**-0.5])


def test_skip_gain_zero_init_makes_blocks_identity_on_residual():
    m = NFNet(TINY_DEEPER_DIFF).eval()
    assert all(blk.skip_gain.item() == 0 for s in m.stages for blk in s)
    x = torch.randn(1, 32, 8, 8)
    block = m.stages[0][1]  # non-transition
    torch.testing.assert_close(block(x), x)


@pytest.mark.parametrize('out_indices,expect', [
    ((0, 1, 2, 3), [(0, 32, 16), (1, 64, 8), (2, 96, 4), (3, 256, 2)]),
    (-1, [(3, 256, 2)]),
    ((1, -2), [(1, 64, 8), (2, 96, 4)]),
    (0, [(0, 32, 16)]),
])
def test_out_indices(out_indices, expect):
    m = NFNet(TINY_DIFF, out_indices=out_indices).eval()
    outs = m(torch.randn(2, 3, 64, 64))
    assert len(outs) == len(expect)
    for out, (idx, ch, size) in zip(outs, expect):
        assert out.shape == (2, ch, size, size)
        assert 64 // size == [4, 8, 16, 32][idx]
    assert m.out_channels == [32, 64, 96, 256]


def test_out_indices_f0_channels():
    with torch.device('meta'):
        m = NFNet('f0', out_indices=(0, 1, 2, 3))
        outs = m(torch.empty(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [256, 512, 1536, 3072]
    assert [64 // o.shape[-1] for o in outs] == [4, 8, 16, 32]


def test_arch_dict_states_only_what_differs():
    # F1 is F0 with twice the depths
    assert NFNet.parse_arch(
        dict(depths=[2, 4, 12, 6])) == NFNet.parse_arch('f1')
    full = NFNet(TINY_DIFF).arch
    assert full['group_width'] == 16 and full['widths'] == [32, 64, 96, 128]
    # the rest is F0's
    assert full['alpha'] == 0.2 and full['stem_strides'] == [2, 1, 1, 2]
    assert full['final_expansion'] == 2 and full['se_ratio'] == 0.5


def test_errors():
    with pytest.raises(ValueError, match=r"'f9'.*'f0'.*'f4\+'.*'f7'"):
        NFNet('f9')
    with pytest.raises(ValueError, match=r"\['dephts'\].*'depths'"):
        NFNet(dict(TINY_DIFF, dephts=[1, 1]))
    with pytest.raises(ValueError, match=r"'depths' and 'widths'.*\[1, 1\]"):
        NFNet(dict(TINY_DIFF, depths=[1, 1]))
    with pytest.raises(ValueError, match=r"'stem_widths' and 'stem_strides'"):
        NFNet(dict(TINY_DIFF, stem_widths=[8, 16]))
    with pytest.raises(ValueError, match=r'4.*-4 \.\.\. 3'):
        NFNet(TINY_DIFF, out_indices=(1, 4))
    with pytest.raises(ValueError, match='-5'):
        NFNet(TINY_DIFF, out_indices=-5)
    with pytest.raises(ValueError, match="'Hardswish'.*'GELU'"):
        NFNet(TINY_DIFF, act_cfg=dict(type='Hardswish'))
    with pytest.raises(ValueError, match="'valid'"):
        NFNet(TINY_DIFF, padding='valid')
    with pytest.raises(ValueError, match='frozen_stages'):
        NFNet(TINY_DIFF, frozen_stages=5)
    with pytest.raises(ValueError, match=r'drop_path_rate .*got 1\.2'):
        NFNet(TINY_DIFF, drop_path_rate=1.2)
    with pytest.raises(
            ValueError, match=r'depths must be >= 1.*\[1, 0, 1, 1\]'):
        NFNet(dict(TINY_DIFF, depths=[1, 0, 1, 1]))
    with pytest.raises(ValueError, match='final_expansion >= 0, got .* -1'):
        NFNet(dict(TINY_DIFF, final_expansion=-1))
    with pytest.raises(ValueError, match="style must be.*'keras'"):
        NFNet(dict(TINY_DIFF, style='keras'))
    with pytest.raises(ValueError, match="attention must be.*'cbam'"):
        NFNet(dict(TINY_DIFF, attention='cbam'))
    with pytest.raises(ValueError, match='depth must be 26, 50 or 101.*34'):
        NFResNet(depth=34)
    with pytest.raises(ValueError, match='depth and attention, or arch'):
        NFResNet(depth=101, arch='resnet50')
    with pytest.raises(ValueError, match=r"Unknown NFRegNet arch 'b9'.*'b5'"):
        NFRegNet('b9')


def test_other_activation_and_symmetric_padding():
    x = torch.randn(1, 3, 32, 32)
    torch.manual_seed(0)
    a = randomize_(NFNet(TINY_DIFF, act_cfg=dict(type='ReLU'))).eval()
    assert a.gamma == pytest.approx(1.7139588594436646)
    assert a.stem.conv2.input_scale == pytest.approx(1.7139588594436646)
    torch.manual_seed(0)
    b = randomize_(
        NFNet(TINY_DIFF, act_cfg=dict(type='ReLU'),
              padding='symmetric')).eval()
    b.load_state_dict(a.state_dict(), strict=True)
    ya, yb = a(x)[0], b(x)[0]
    assert ya.shape == yb.shape == (1, 256, 1, 1)
    assert not torch.allclose(ya, yb)  # the padding really differs


@pytest.mark.parametrize('frozen', [0, 2, 4])
def test_frozen_stages(frozen):
    m = NFNet(TINY_DIFF, frozen_stages=frozen)
    m.train()
    frozen_modules = [m.stem] + list(m.stages[:frozen])
    if frozen == 4:
        frozen_modules.append(m.final_conv)
    for module in frozen_modules:
        assert not module.training
        assert all(not p.requires_grad for p in module.parameters())
    for module in m.stages[frozen:]:
        assert module.training
        assert all(p.requires_grad for p in module.parameters())
    assert m.final_conv.weight.requires_grad == (frozen < 4)
    m.train()  # stays frozen
    assert not m.stem.training


def test_drop_path_schedule():
    m = NFNet(TINY_DEEPER_DIFF, drop_path_rate=0.25)
    rates = [blk.drop_path.drop_rate for s in m.stages for blk in s]
    n = len(rates)
    assert rates == pytest.approx([0.25 * i / n for i in range(n)])


def test_stochastic_depth_does_not_rescale():
    torch.manual_seed(0)
    sd = StochasticDepth(0.5).train()
    x = torch.rand(4000, 3, 2, 2) + 1.
    y = sd(x)
    kept = (y == x).flatten(1).all(1)
    dropped = (y == 0).flatten(1).all(1)
    # each sample is either kept unchanged (no 1/keep factor) or zeroed
    assert bool((kept | dropped).all())
    assert 0.45 < kept.float().mean().item() < 0.55
    # so the expectation shrinks by keep_prob (timm's DropPath would not)
    assert y.mean().item() == pytest.approx(0.5 * x.mean().item(), rel=0.05)
    sd.eval()
    assert torch.equal(sd(x), x)


def test_stochastic_depth_in_block():
    m = randomize_(NFNet(TINY_DEEPER_DIFF, drop_path_rate=0.9)).train()
    block = m.stages[0][1]
    x = torch.randn(64, 32, 4, 4)
    block.eval()
    full = block(x)
    block.train()
    torch.manual_seed(0)
    out = block(x)
    per_sample = [
        torch.allclose(o, f) or torch.allclose(o, xi)
        for o, f, xi in zip(out, full, x)
    ]
    assert all(per_sample)
    assert any(torch.allclose(o, xi) for o, xi in zip(out, x))
    assert any(torch.allclose(o, f) for o, f in zip(out, full))


def test_with_cp_same_gradients():
    torch.manual_seed(0)
    a = randomize_(NFNet(TINY_DIFF))
    b = NFNet(TINY_DIFF, with_cp=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    for m in (a, b):
        m.train()
        m(x)[0].square().sum().backward()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=n)


@pytest.mark.slow
def test_classifier_forward_backward_f0():
    torch.manual_seed(0)
    model = MODELS.build(
        classifier_cfg('f0', num_classes=10, drop_path_rate=0.25))
    model.init_weights()
    model.train()
    from mmpretrain.structures import DataSample
    x = torch.randn(2, 3, 64, 64)
    samples = [DataSample().set_gt_label(i) for i in (1, 7)]
    losses = model(x, samples, mode='loss')
    losses['loss'].backward()
    assert torch.isfinite(losses['loss'])
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    # skip gains are 0 at init, yet receive gradient (SkipInit)
    assert model.backbone.stages[0][0].skip_gain.grad.abs() > 0

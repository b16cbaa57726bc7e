"""Shared helpers of the NFNet model tests (not a test module)."""
import torch

from nfnet_mm.models.backbones.nfnet import NFNet

__all__ = ['TINY', 'TINY2', 'classifier_cfg', 'randomize_']

from shared_archs import TINY_DIFF  # noqa: E402

TINY = TINY_DIFF  # what differs from F0 (the backbone fills in the rest)
TINY2 = dict(TINY, depths=[2, 2, 2, 1])


def classifier_cfg(arch='f0', num_classes=1000, **backbone):
    full = NFNet.parse_arch(arch)
    in_ch = full['widths'][-1] * full['final_expansion']
    return dict(
        type='ImageClassifier',
        backbone=dict(type='NFNet', arch=arch, **backbone),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='NFNetClsHead',
            num_classes=num_classes,
            in_channels=in_ch,
            dropout_rate=0.2))


def randomize_(model, trained_like=False):
    """Make skip gains, gains and biases non-trivial (they init to 0/1).

    ``trained_like`` keeps them in a range like a trained NFNet's (small skip
    gains), so that a deep net's output stays O(1) and an absolute float32
    tolerance is meaningful.
    """
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            u = torch.rand(p.shape, generator=g)
            if name.endswith('skip_gain') and trained_like:
                p.copy_(0.1 + 0.2 * u)
            elif name.endswith('gain'):
                p.copy_(0.9 + 0.2 * u if trained_like else 0.5 + u)
            elif name.endswith('bias'):
                p.copy_(
                    torch.randn(p.shape, generator=g) *
                    (0.02 if trained_like else 0.1))
    return model

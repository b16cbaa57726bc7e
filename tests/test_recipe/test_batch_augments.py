"""HalfMixupHalfCutMix: MixUp on the first half, CutMix on the second."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nfnet_mm  # noqa: F401
from mmpretrain.models.utils.data_preprocessor import ClsDataPreprocessor
from mmpretrain.registry import BATCH_AUGMENTS
from mmpretrain.structures import DataSample
from nfnet_mm.models.utils.batch_augments import HalfMixupHalfCutMix

N, C, H, W, K = 8, 3, 16, 16, 5


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    # continuous random images: no two rows share a pixel value
    x = torch.rand(N, C, H, W, generator=g)
    labels = torch.arange(N) % K
    y = F.one_hot(labels, K).float()
    return x, y


def _explain_mixup_row(out_row, x):
    """(j, k, lam) with out_row == lam * x[j] + (1 - lam) * x[k], or None."""
    for j in range(len(x)):
        for k in range(len(x)):
            if j == k:
                continue
            d = (x[j] - x[k]).flatten()
            lam = torch.dot(out_row.flatten() - x[k].flatten(), d) / d.dot(d)
            if torch.allclose(lam * x[j] + (1 - lam) * x[k], out_row,
                              atol=1e-5):
                return j, k, float(lam)
    return None


def _cutmix_partner(out_row, x, i):
    """(k, own_mask) if each pixel of out_row is x[i]'s or x[k]'s, k != i."""
    own = (out_row == x[i]).all(0)
    for k in range(len(x)):
        if k == i:
            continue
        other = (out_row == x[k]).all(0)
        if (own | other).all():
            return k, own
    return None


def test_registered_and_bad_alpha():
    aug = BATCH_AUGMENTS.build(dict(type='HalfMixupHalfCutMix'))
    assert isinstance(aug, HalfMixupHalfCutMix)
    assert (aug.mixup_alpha, aug.cutmix_alpha) == (0.2, 1.0)
    with pytest.raises(ValueError, match='mixup_alpha'):
        HalfMixupHalfCutMix(mixup_alpha=0)
    with pytest.raises(ValueError, match='cutmix_alpha'):
        HalfMixupHalfCutMix(cutmix_alpha=-1.)
    with pytest.raises(ValueError, match='N, C, H, W'):
        aug(torch.rand(4, 3, 8), torch.rand(4, 2))


def test_first_half_mixup_second_half_cutmix():
    torch.manual_seed(0)
    np.random.seed(0)
    aug = HalfMixupHalfCutMix(mixup_alpha=1.0, cutmix_alpha=1.0)
    x, y = _batch()
    out, score = aug(x.clone(), y.clone())
    assert out.shape == x.shape and score.shape == y.shape
    half = N // 2
    for i in range(half):
        # MixUp row: a convex combination of its own image and a partner
        # from the first half, with the same ratio for the soft label
        got = _explain_mixup_row(out[i], x[:half])
        assert got is not None, f'row {i} is not a MixUp of first-half rows'
        j, k, lam = got
        if lam < 0.5:  # the explanation is symmetric in (j, k)
            j, k, lam = k, j, 1 - lam
        assert 0. <= lam <= 1.
        assert i in (j, k)
        # not a CutMix row: pixels are blends, not copies
        if 0.01 < lam < 0.99:
            assert _cutmix_partner(out[i], x, i) is None
        own = lam if j == i else 1 - lam
        other = k if j == i else j
        exp = own * y[i] + (1 - own) * y[other]
        assert torch.allclose(score[i], exp, atol=1e-4)
    for i in range(half, N):
        # CutMix row: every pixel comes from its own image or a partner in
        # the second half; label weights = pixel fractions
        got = _cutmix_partner(out[i], x[half:], i - half)
        assert got is not None, f'row {i} is not a CutMix of second-half rows'
        k, own_mask = got
        lam = own_mask.float().mean()
        exp = lam * y[i] + (1 - lam) * y[k + half]
        assert torch.allclose(score[i], exp, atol=1e-6)
        # the pasted region is one axis-aligned box
        ys, xs = torch.nonzero(~own_mask, as_tuple=True)
        if len(ys):
            box = torch.zeros_like(own_mask)
            box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
            assert torch.equal(box, ~own_mask)
    # soft labels sum to 1
    assert torch.allclose(score.sum(1), torch.ones(N))


def test_partners_are_a_derangement_within_halves():
    for n in range(2, 9):
        for _ in range(20):
            p = HalfMixupHalfCutMix.partners(n)
            assert sorted(p.tolist()) == list(range(n))
            assert (p != torch.arange(n)).all()


def test_mixup_ratio_distribution_follows_alpha():
    np.random.seed(1)
    torch.manual_seed(1)
    aug = HalfMixupHalfCutMix(mixup_alpha=0.2)
    x = torch.rand(400, 1, 2, 2)
    y = F.one_hot(torch.arange(400) % 4, 4).float()
    _, _, lam = aug.mixup(x, y)
    # Beta(0.2, 0.2) is U-shaped: most ratios near 0 or 1; mean 0.5
    assert ((lam < 0.1) | (lam > 0.9)).float().mean() > 0.5
    assert abs(lam.mean().item() - 0.5) < 0.08
    _, _, lam_c = HalfMixupHalfCutMix().cutmix(
        torch.rand(400, 1, 32, 32), y)
    # uniform area (Beta(1, 1)): kept fraction spread over [0, 1]
    assert 0.35 < lam_c.mean().item() < 0.75
    assert (lam_c < 0.3).any() and (lam_c > 0.9).any()


def test_applied_to_every_batch_through_preprocessor():
    pre = ClsDataPreprocessor(
        num_classes=K,
        batch_augments=dict(augments=[dict(type='HalfMixupHalfCutMix')]))
    for seed in range(5):
        x, _ = _batch(seed)
        samples = [DataSample().set_gt_label(i % K) for i in range(N)]
        out = pre(dict(inputs=list((x * 255).to(torch.uint8)),
                       data_samples=samples), training=True)
        scores = torch.stack([s.gt_score for s in out['data_samples']])
        # every batch is mixed: no row of the second half keeps a one-hot
        # label unless its box was empty, and all rows sum to 1
        assert torch.allclose(scores.sum(1), torch.ones(N), atol=1e-5)
        assert (scores.max(1).values < 1).sum() >= N // 2 - 1

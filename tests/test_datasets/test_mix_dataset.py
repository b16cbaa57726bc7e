"""MixupCutMixDataset: DeepMind's half-MixUp / half-CutMix in the loader.

The reference (deepmind-research/nfnets, dataset.py with experiment_nfnets.py's
``augment_before_mix=False``) mixes quarter 1 with 2 by MixUp and 3 with 4 by
CutMix in a batch twice the size, then applies RandAugment to each mixed image.
"""
import os.path as osp

import mmcv
import numpy as np
import pytest
from helpers import REPO
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.registry import DATASETS, TRANSFORMS

import nfnet_mm  # noqa: F401
from nfnet_mm.datasets import MixupCutMixDataset

F0 = osp.join(REPO, 'configs/nfnet/nfnet-f0_8xb128_in1k.py')
A, B = 50, 200  # grey levels of the two classes (RandAugment fills 128)


class _Constant:
    """``n`` constant images: image ``i`` has grey level ``levels[i]``."""

    def __init__(self, levels, labels, size=(12, 16)):
        self.levels, self.labels, self.size = levels, labels, size
        self.metainfo = dict(classes=[str(c) for c in sorted(set(labels))])
        self.reads = []

    def __len__(self):
        return len(self.levels)

    def __getitem__(self, i):
        self.reads.append(i)
        img = np.full(self.size + (3, ), self.levels[i], dtype=np.uint8)
        return dict(img=img, gt_label=self.labels[i])


@TRANSFORMS.register_module()
class _SeenBy:
    """Records the results dicts it sees."""
    seen = []

    def __call__(self, results):
        _SeenBy.seen.append(dict(results))
        return results


def _f0_flow(tmp_path, monkeypatch, augment_before_mix):
    """The configured F0 training dataset on two classes of grey PNGs.

    Class 0 is grey level A, class 1 grey level B, both 60 x 80; RandAugment
    is the configured NFRandAugment(4 x 5) but always draws Rotate (+-15 deg).
    """
    for label, level in enumerate((A, B)):
        for k in range(8):
            mmcv.imwrite(
                np.full((60, 80, 3), level, np.uint8),
                str(tmp_path / f'c{label}' / f'{k}.png'))
    cfg = Config.fromfile(F0).train_dataloader.dataset
    assert cfg.type == 'MixupCutMixDataset' and cfg.partners == 'distinct'
    assert not cfg.augment_before_mix
    cfg.dataset = dict(
        type='CustomDataset',
        data_root=str(tmp_path),
        pipeline=cfg.dataset.pipeline)
    cfg.augment_before_mix = augment_before_mix
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(cfg)
    ds.full_init()
    ra = ds.augment.transforms[0]
    assert type(ra).__name__ == 'NFRandAugment' and ra.magnitude == 5
    rotate = [p['type'] for p in ra.policies].index('Rotate')
    monkeypatch.setattr(ra, 'random_policy_indices', lambda: [rotate] * 4)
    return ds


def _cutmix_two_classes(batch):
    """CutMix rows of two classes with a mid-sized box.

    Returns (first, second, mix_box): masks of the pixels showing the first
    image (the box's) and the second image (grey A is class 0, B class 1).
    """
    rows = []
    for out in batch:
        s = out['data_samples']
        img = out['inputs'][0].numpy()
        if s.mix_mode == 'cutmix' and s.gt_score.min() > 0 and \
                0.15 < s.mix_ratio < 0.6:
            a, b = img < 90, img > 160
            first, second = (a, b) if s.gt_label.item() == 0 else (b, a)
            rows.append((first, second, s.mix_box))
    return rows


def _agrees_with_box(first, second, box):
    """The first image only inside the axis-aligned box, the second outside."""
    y1, y2, x1, x2 = box
    inside = np.zeros(first.shape, bool)
    inside[y1:y2, x1:x2] = True
    return not (first & ~inside).any() and not (second & inside).any()


def _is_rectangle(region):
    ys, xs = np.nonzero(region)
    box = region[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return box.mean() > 0.98


@pytest.mark.parametrize('before', [False, True])
def test_f0_flow_randaugment_acts_on_the_mixed_images(tmp_path, monkeypatch,
                                                      before):
    ds = _f0_flow(tmp_path, monkeypatch, augment_before_mix=before)
    np.random.seed(0)
    rows = []
    for _ in range(2):
        batch = ds.__getitems__(list(range(16)))
        # exactly half MixUp (first) and half CutMix (second)
        assert [o['data_samples'].mix_mode for o in batch] == \
            ['mixup'] * 8 + ['cutmix'] * 8
        for out in batch:
            s = out['data_samples']
            assert tuple(out['inputs'].shape) == (3, 192, 192)
            score = s.gt_score.numpy()
            assert score.sum() == pytest.approx(1.)
            # the label weight: the MixUp ratio, or the box's area fraction
            if s.mix_mode == 'cutmix':
                y1, y2, x1, x2 = s.mix_box
                assert s.mix_ratio == (y2 - y1) * (x2 - x1) / 192**2
            assert score[s.gt_label.item()] >= s.mix_ratio - 1e-6
        rows += _cutmix_two_classes(batch)
    assert len(rows) >= 3
    for first, second, box in rows:
        if before:
            # mixed after the rotation: the box's edges stay axis-aligned
            assert _agrees_with_box(first, second, box)
        else:
            # rotated after mixing: the box's edges moved and turned
            assert not _agrees_with_box(first, second, box)
            assert not _is_rectangle(first)


def _reference_cutmix_mask(h, w):
    """DeepMind's cutmix_padding, written plainly (same draws, same order)."""
    r_x = np.random.randint(0, w)
    r_y = np.random.randint(0, h)
    proportion = np.random.rand()
    ratio = np.sqrt(1 - proportion)
    r_w, r_h = int(ratio * w), int(ratio * h)
    x1, y1 = min(max(r_x - r_w // 2, 0), w), min(max(r_y - r_h // 2, 0), h)
    x2, y2 = min(max(r_x + r_w // 2, 0), w), min(max(r_y + r_h // 2, 0), h)
    mask = np.zeros((h, w, 1))
    mask[y1:y2, x1:x2] = 1.
    return mask


def test_mix_matches_the_reference_formulas():
    ds = MixupCutMixDataset(_Constant([0], [0]), num_classes=3)
    rng = np.random.RandomState(1)
    for seed in range(20):
        a = dict(
            img=rng.randint(0, 256, (9, 13, 3)).astype(np.uint8), gt_label=0)
        b = dict(
            img=rng.randint(0, 256, (9, 13, 3)).astype(np.uint8), gt_label=2)
        np.random.seed(seed)
        cut = ds._mix(a, b, cutmix=True)
        np.random.seed(seed)
        mask = _reference_cutmix_mask(9, 13)
        expected = mask * a['img'] + (1 - mask) * b['img']
        np.testing.assert_array_equal(cut['img'], expected.astype(np.uint8))
        ratio = mask.mean()
        np.testing.assert_allclose(
            cut['gt_score'], [ratio, 0, 1 - ratio], atol=1e-6)

        np.random.seed(seed)
        mix = ds._mix(a, b, cutmix=False)
        np.random.seed(seed)
        r = np.random.beta(0.2, 0.2)
        expected = np.clip(r * a['img'] + (1 - r) * b['img'].astype(float), 0,
                           255).astype(np.uint8)
        assert np.abs(mix['img'].astype(int) - expected).max() <= 1
        np.testing.assert_allclose(mix['gt_score'], [r, 0, 1 - r], atol=1e-6)


def test_mixup_ratios_follow_beta_02():
    import scipy.stats as scipy_stats  # the 'tests' extra
    ds = MixupCutMixDataset(_Constant([0], [0]), num_classes=2)
    img = dict(img=np.zeros((2, 2, 3), np.uint8), gt_label=0)
    np.random.seed(0)
    ratios = [
        ds._mix(img, img, cutmix=False)['mix_info']['mix_ratio']
        for _ in range(2000)
    ]
    assert scipy_stats.kstest(ratios, 'beta', args=(0.2, 0.2)).pvalue > 1e-3


@pytest.mark.parametrize('partners', ['distinct', 'batch'])
def test_partners(partners):
    n = 40
    data = _Constant(list(range(n)), list(range(n)))
    ds = MixupCutMixDataset(data, partners=partners)
    np.random.seed(0)
    batch = ds.__getitems__(list(range(8)))
    # 'distinct' reads a second image per row; 'batch' reuses the batch
    assert len(data.reads) == (16 if partners == 'distinct' else 8)
    seconds = []
    for i, out in enumerate(batch):
        score = out['data_samples'].gt_score.numpy()
        assert out['data_samples'].gt_label.item() == i
        others = [k for k in np.flatnonzero(score) if k != i]
        assert len(others) == 1, 'never mixed with itself'
        seconds.append(others[0])
    if partners == 'batch':
        assert sorted(seconds) == list(range(8))  # a derangement of the batch
    else:
        assert set(seconds) == set(data.reads[8:])


@pytest.mark.parametrize('before', [False, True])
def test_order_and_mix_prob(before):
    data = _Constant([A, B, A, B], [0, 1, 0, 1])
    ds = MixupCutMixDataset(
        data, augment=[dict(type='_SeenBy')], augment_before_mix=before)
    _SeenBy.seen.clear()
    ds.__getitems__([0, 1, 2, 3])
    # after the mix the augment sees the soft labels; before, the sources
    assert len(_SeenBy.seen) == (8 if before else 4)
    assert all(('gt_score' in r) != before for r in _SeenBy.seen)

    ds.mix_prob = 0.
    out = ds.__getitems__([0, 1])
    assert 'gt_score' not in out[0]['data_samples']
    assert out[1]['data_samples'].gt_label.item() == 1


def test_bad_arguments():
    data = _Constant([A, B], [0, 1])
    with pytest.raises(ValueError, match='partners'):
        MixupCutMixDataset(data, partners='pairs')
    with pytest.raises(ValueError, match='mix_prob'):
        MixupCutMixDataset(data, mix_prob=1.5)
    data.metainfo = {}
    with pytest.raises(ValueError, match='num_classes'):
        MixupCutMixDataset(data)
    ds = MixupCutMixDataset(data, num_classes=2)
    with pytest.raises(ValueError, match='fixed-size crop'):
        ds._mix(
            dict(img=np.zeros((4, 4, 3), np.uint8), gt_label=0),
            dict(img=np.zeros((4, 5, 3), np.uint8), gt_label=1), True)


def test_single_reads_are_half_mixup_half_cutmix():
    """Read one index at a time (e.g. inside RepeatDataset), each sample is
    MixUp or CutMix with probability 1/2, not always CutMix."""
    n = 20
    ds = MixupCutMixDataset(_Constant(list(range(n)), list(range(n))))
    np.random.seed(0)
    modes = [ds[i % n]['data_samples'].mix_mode for i in range(400)]
    assert set(modes) == {'mixup', 'cutmix'}
    assert 0.4 < modes.count('cutmix') / len(modes) < 0.6
    # with mix_prob < 1 the unmixed single reads carry a one-hot gt_score too:
    # the head picks hard or soft labels for a whole batch from its first
    # sample
    light = MixupCutMixDataset(
        _Constant(list(range(n)), list(range(n))), mix_prob=0.5)
    samples = [light[i % n]['data_samples'] for i in range(40)]
    plain = [(i % n, s) for i, s in enumerate(samples) if 'mix_mode' not in s]
    assert 5 < len(plain) < 35 and all('gt_score' in s for s in samples)
    for i, s in plain:
        assert s.gt_score.argmax() == i and float(s.gt_score.sum()) == 1.
    assert 'gt_score' not in MixupCutMixDataset(
        _Constant([A], [0]), num_classes=2, mix_prob=0.)[0]['data_samples']
    batch_pairs = MixupCutMixDataset(
        _Constant([A, B], [0, 1]), partners='batch')
    with pytest.raises(TypeError, match='read by batches'):
        batch_pairs[0]

"""NFRandAugment: DeepMind's 16 ops and magnitude scale."""
import numpy as np
import pytest
from mmpretrain.registry import TRANSFORMS

import nfnet_mm  # noqa: F401
from nfnet_mm.datasets.transforms.randaugment import (NFPosterize,
                                                      NFRandAugment,
                                                      NFTranslate)


# DeepMind's level_to_arg at magnitude M (m = M / 10), written plainly
def _reference_args(M):
    m = M / 10.
    return {
        ('Rotate', None):
        30. * m,
        ('NFPosterize', None):
        int(4 * m),
        ('Solarize', None):
        int(256 * m),
        ('SolarizeAdd', None):
        int(110 * m),
        # mmcv factor = 1 + magnitude; reference factor = 1.8 m + 0.1
        ('ColorTransform', None):
        1.8 * m + 0.1 - 1,
        ('Contrast', None):
        1.8 * m + 0.1 - 1,
        ('Brightness', None):
        1.8 * m + 0.1 - 1,
        ('Sharpness', None):
        1.8 * m + 0.1 - 1,
        ('Shear', 'horizontal'):
        0.3 * m,
        ('Shear', 'vertical'):
        0.3 * m,
        ('NFTranslate', 'horizontal'):
        100. * m,
        ('NFTranslate', 'vertical'):
        100. * m,
        ('Cutout', None):
        2 * int(40 * m),
    }


def _realised(ra):
    out = {}
    for t in ra.transforms:
        if t.magnitude_range is None:
            continue
        out[(type(t).__name__, getattr(t, 'direction', None))] = \
            t.random_magnitude()
    return out


@pytest.mark.parametrize('magnitude', [5, 10, 15])
def test_realised_parameters_match_reference(magnitude):
    ra = TRANSFORMS.build(dict(type='NFRandAugment', magnitude=magnitude))
    assert ra.num_policies == 4  # num_layers default
    names = sorted(type(t).__name__ for t in ra.transforms)
    assert len(names) == 16
    assert {'AutoContrast', 'Equalize', 'Invert'} <= set(names)
    # every op is applied once chosen, as in the reference
    assert all(t.prob == 1. for t in ra.transforms)
    realised = _realised(ra)
    ref = _reference_args(magnitude)
    assert set(realised) == set(ref)
    for key, value in ref.items():
        assert realised[key] == pytest.approx(value, abs=1e-6), key
    # enhancement ops never flip sign; geometric ops do half of the time
    for t in ra.transforms:
        name = type(t).__name__
        if name in ('ColorTransform', 'Contrast', 'Brightness', 'Sharpness'):
            assert t.random_negative_prob == 0.
        if name in ('Rotate', 'Shear', 'NFTranslate'):
            assert t.random_negative_prob == 0.5


def test_magnitude_15_stronger_than_5():
    weak = _realised(NFRandAugment(magnitude=5))
    strong = _realised(NFRandAugment(magnitude=15))
    for key in (('Rotate', None), ('Shear', 'horizontal'),
                ('NFTranslate', 'vertical'), ('Cutout', None), ('SolarizeAdd',
                                                                None)):
        assert strong[key] == pytest.approx(3 * weak[key]), key
    # enhancement factors: 1.0 (identity) at 5, 2.8 at 15
    assert 1 + weak[('Contrast', None)] == pytest.approx(1.0)
    assert 1 + strong[('Contrast', None)] == pytest.approx(2.8)


def test_ops_apply_and_translate_in_pixels():
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, (40, 60, 3), dtype=np.uint8)
    ra = NFRandAugment(magnitude=15)
    for t in ra.transforms:  # every op runs on an image
        out = t(dict(img=img.copy()))
        assert out['img'].shape == img.shape and out['img'].dtype == np.uint8
    for _ in range(10):
        assert ra(dict(img=img.copy()))['img'].shape == img.shape
    # 10 px to the right: column 10 of the result is column 0 of the input
    tr = NFTranslate(
        magnitude=10,
        direction='horizontal',
        prob=1.,
        random_negative_prob=0.,
        pad_val=128)
    out = tr(dict(img=img.copy()))['img']
    np.testing.assert_array_equal(out[:, 10:], img[:, :-10])
    assert (out[:, :10] == 128).all()
    # posterize truncates like the reference: 2.9 -> 2 bits
    post = NFPosterize(bits=2.9, prob=1.)
    out = post(dict(img=img.copy()))['img']
    np.testing.assert_array_equal(out, img & 0b11000000)


def test_bad_arguments():
    with pytest.raises(ValueError, match='magnitude'):
        NFRandAugment(magnitude=-1)
    with pytest.raises(ValueError, match='num_layers'):
        NFRandAugment(magnitude=5, num_layers=0)

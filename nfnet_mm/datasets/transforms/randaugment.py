"""RandAugment with DeepMind's op set and magnitude scale (NFNet reference).

As ``deepmind-research/nfnets/autoaugment.py``: 16 ops, fill value 128.
"""
import math
from typing import Optional

import mmcv
from mmpretrain.datasets.transforms import Posterize, RandAugment, Translate
from mmpretrain.registry import TRANSFORMS

__all__ = [
    'NFRandAugment', 'NFTranslate', 'NFPosterize', 'nf_randaug_policies'
]


@TRANSFORMS.register_module()
class NFTranslate(Translate):
    """Translate by a number of *pixels* (the TF RandAugment convention).

    MMPretrain's :class:`Translate` reads its magnitude as a fraction of the
    image size.

    Args:
        magnitude (int | float, optional): Offset in pixels. If None,
            generated from ``magnitude_range``. Defaults to None.
        **kwargs: Other arguments of :class:`Translate`.
    """

    def transform(self, results: dict) -> dict:
        """Translate ``results['img']`` by a pixel offset."""
        if self.random_disable():
            return results
        if self.magnitude is not None:
            offset = self.random_negative(self.magnitude)
        else:
            offset = self.random_negative(self.random_magnitude())
        img = results['img']
        translated = mmcv.imtranslate(
            img,
            offset,
            direction=self.direction,
            border_value=self.pad_val,
            interpolation=self.interpolation)
        results['img'] = translated.astype(img.dtype)
        return results


@TRANSFORMS.register_module()
class NFPosterize(Posterize):
    """Posterize keeping ``int(magnitude)`` bits, clipped to [0, 8].

    The reference truncates where MMPretrain's :class:`Posterize` rounds up.

    Args:
        **kwargs: Arguments of :class:`Posterize`.
    """

    def transform(self, results: dict) -> dict:
        """Posterize ``results['img']``."""
        if self.random_disable():
            return results
        bits = self.bits if self.bits is not None else self.random_magnitude()
        bits = int(min(max(math.floor(bits), 0), 8))
        img = results['img']
        results['img'] = mmcv.posterize(img, bits=bits).astype(img.dtype)
        return results


def nf_randaug_policies(translate_const: float = 100.,
                        cutout_const: float = 40.,
                        pad_val: int = 128) -> list:
    """The 16 ops of the reference RandAugment as MMPretrain policies.

    Each ``magnitude_range`` spans levels 0 to 10 (linear, extrapolated above).

    Args:
        translate_const (float): Translation in pixels at level 10.
            Defaults to 100 (the reference, for ImageNet-sized images).
        cutout_const (float): Half side of the cutout square in pixels at
            level 10. Defaults to 40.
        pad_val (int): Fill value. Defaults to 128.
    """
    enhance = dict(
        magnitude_range=(-0.9, 0.9), random_negative_prob=0., prob=1.)
    signed = dict(random_negative_prob=0.5, prob=1.)
    return [
        dict(type='AutoContrast', prob=1.),
        dict(type='Equalize', prob=1.),
        dict(type='Invert', prob=1.),
        dict(
            type='Rotate', magnitude_range=(0, 30), pad_val=pad_val, **signed),
        dict(type='NFPosterize', magnitude_range=(0, 4), prob=1.),
        dict(type='Solarize', magnitude_range=(0, 256), prob=1.),
        dict(type='SolarizeAdd', magnitude_range=(0, 110), thr=128, prob=1.),
        # factor = 1 + magnitude = 1.8 * M / 10 + 0.1, never negated
        dict(type='ColorTransform', **enhance),
        dict(type='Contrast', **enhance),
        dict(type='Brightness', **enhance),
        dict(type='Sharpness', **enhance),
        dict(
            type='Shear',
            magnitude_range=(0, 0.3),
            direction='horizontal',
            pad_val=pad_val,
            **signed),
        dict(
            type='Shear',
            magnitude_range=(0, 0.3),
            direction='vertical',
            pad_val=pad_val,
            **signed),
        dict(
            type='NFTranslate',
            magnitude_range=(0, translate_const),
            direction='horizontal',
            pad_val=pad_val,
            **signed),
        dict(
            type='NFTranslate',
            magnitude_range=(0, translate_const),
            direction='vertical',
            pad_val=pad_val,
            **signed),
        # square side 2 * int(cutout_const * M / 10)
        dict(
            type='Cutout',
            magnitude_range=(0, 2 * cutout_const),
            pad_val=pad_val,
            prob=1.),
    ]


@TRANSFORMS.register_module()
class NFRandAugment(RandAugment):
    """RandAugment as in the NFNet reference (TF ``autoaugment.py``).

    ``num_layers`` ops of :func:`nf_randaug_policies`, drawn with replacement,
    each applied at ``magnitude`` (10 = max level; F0-F6 use 5, 10, 10, 15,
    15, 15, 15). Unlike the reference, Contrast blends towards the mean grey
    (not its buggy ``num_pixels / 256``) and Cutout lies inside the image. In
    the NFNet recipe it runs after MixUp / CutMix, as the ``augment`` of
    :class:`~nfnet_mm.datasets.MixupCutMixDataset`.

    Args:
        magnitude (int | float): The shared magnitude ``M``.
        num_layers (int): Ops per image. Defaults to 4.
        translate_const (float): Translation in pixels at magnitude 10.
            Defaults to 100 (ImageNet-sized images; scale it for small ones).
        cutout_const (float): Half side of the cutout square in pixels at
            magnitude 10. Defaults to 40.
        pad_val (int): Fill value of geometric ops and cutout.
            Defaults to 128.
        magnitude_std (float | str): Noise on the magnitude, as in
            :class:`RandAugment`. Defaults to 0 (the reference: fixed).
    """

    def __init__(self,
                 magnitude: float,
                 num_layers: int = 4,
                 translate_const: float = 100.,
                 cutout_const: float = 40.,
                 pad_val: int = 128,
                 magnitude_std: Optional[float] = 0.) -> None:
        if not isinstance(magnitude, (int, float)) or magnitude < 0:
            raise ValueError('NFRandAugment: magnitude must be a number >= 0 '
                             f'(10 is the reference max level), got '
                             f'{magnitude!r}.')
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError('NFRandAugment: num_layers must be an int >= 1, '
                             f'got {num_layers!r}.')
        self.num_layers = num_layers
        self.magnitude = magnitude
        super().__init__(
            policies=nf_randaug_policies(translate_const, cutout_const,
                                         pad_val),
            num_policies=num_layers,
            magnitude_level=magnitude,
            magnitude_std=magnitude_std,
            total_level=10,
            hparams=dict(pad_val=pad_val))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_layers={self.num_layers}, '
                f'magnitude={self.magnitude}, ops={len(self.transforms)})')

"""Half-MixUp / half-CutMix in the data loader, then RandAugment (NFNets).

As DeepMind's ``nfnets/dataset.py`` with ``augment_before_mix=False``.
"""
from typing import List, Optional, Sequence, Union

import numpy as np
from mmengine.dataset import Compose
from mmpretrain.registry import DATASETS, TRANSFORMS

__all__ = ['MixupCutMixDataset']


@DATASETS.register_module()
class MixupCutMixDataset:
    """Mix pairs of images in the loader workers, then augment and pack them.

    Rows ``[0, B // 2)`` of each batch are MixUp (``r ~ Beta(alpha, alpha)``),
    the others CutMix (a box of uniform area and centre, clipped; ``r`` is its
    area fraction). The soft label ``r y_1 + (1 - r) y_2`` is packed as
    ``gt_score``; the metainfo keeps ``mix_mode``, ``mix_ratio``, ``mix_box``
    ``(y1, y2, x1, x2)``. Unlike the reference, the inner pipeline's uint8
    output is mixed and partners are drawn with replacement.

    Args:
        dataset (dict | Dataset): The source dataset; its pipeline must stop
            before RandAugment and packing (it yields ``img`` as a uint8 HxWxC
            array of a fixed size and ``gt_label``).
        augment (Sequence[dict]): Transforms for each mixed image (or for each
            source image if ``augment_before_mix``), e.g. ``NFRandAugment``.
            Defaults to none.
        pack (dict): The packing transform. Defaults to ``PackInputs``.
        mixup_alpha (float): Beta parameter of the MixUp ratio.
            Defaults to 0.2.
        partners (str): ``'distinct'``: a random other example (the reference;
            ``2 B`` reads); ``'batch'``: a random derangement of the batch
            (``B`` reads). Defaults to ``'distinct'``.
        augment_before_mix (bool): Run ``augment`` before mixing (ablations).
            Defaults to False (the reference's NFNet setting).
        mix_prob (float): Fraction of the batches that are mixed (the others
            are augmented and packed unmixed). Defaults to 1.
        num_classes (int, optional): Length of ``gt_score``. Defaults to the
            number of ``classes`` in the dataset's metainfo.
        indices (int | Sequence[int], optional): ``BaseDataset``'s
            ``indices``, passed to the source dataset's config.
            Defaults to None (all).
    """

    def __init__(self,
                 dataset: Union[dict, object],
                 augment: Sequence[dict] = (),
                 pack: dict = dict(type='PackInputs'),
                 mixup_alpha: float = 0.2,
                 partners: str = 'distinct',
                 augment_before_mix: bool = False,
                 mix_prob: float = 1.,
                 num_classes: Optional[int] = None,
                 indices: Optional[Union[int, Sequence[int]]] = None) -> None:
        if partners not in ('distinct', 'batch'):
            raise ValueError("MixupCutMixDataset: partners must be 'distinct' "
                             f"or 'batch', got {partners!r}.")
        if not mixup_alpha > 0 or not 0 <= mix_prob <= 1:
            raise ValueError('MixupCutMixDataset: need mixup_alpha > 0 and '
                             f'0 <= mix_prob <= 1, got {mixup_alpha!r} and '
                             f'{mix_prob!r}.')
        if indices is not None:
            if not isinstance(dataset, dict):
                raise ValueError('MixupCutMixDataset: indices need the source '
                                 'dataset as a config dict; subset the built '
                                 'dataset itself instead.')
            dataset = dict(dataset, indices=indices)
        self.dataset = DATASETS.build(dataset) if isinstance(dataset,
                                                             dict) else dataset
        if num_classes is None:
            num_classes = len(self.dataset.metainfo.get('classes', ()))
        if num_classes < 2:
            raise ValueError('MixupCutMixDataset: the dataset has no '
                             "metainfo 'classes'; pass num_classes.")
        self.num_classes = num_classes
        self.augment = Compose([TRANSFORMS.build(t) for t in augment])
        self.pack = TRANSFORMS.build(pack)
        self.mixup_alpha = float(mixup_alpha)
        self.partners = partners
        self.augment_before_mix = augment_before_mix
        self.mix_prob = mix_prob

    @property
    def metainfo(self) -> dict:
        """The source dataset's metainfo."""
        return self.dataset.metainfo

    def full_init(self) -> None:
        """Fully initialise the source dataset."""
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> dict:
        """One sample read alone: MixUp or CutMix with probability 1/2."""
        if self.partners == 'batch' and self.mix_prob > 0:
            raise TypeError(
                "MixupCutMixDataset(partners='batch') pairs the images of a "
                'batch, so it must be read by batches (__getitems__), not '
                "one index at a time; use partners='distinct' here.")
        return self._batch([idx], cutmix_from=int(np.random.rand() < 0.5))[0]

    def __getitems__(self, indices: Sequence[int]) -> List[dict]:
        """One batch: the first half MixUp, the second half CutMix."""
        return self._batch(indices, cutmix_from=len(indices) // 2)

    def _batch(self, indices: Sequence[int], cutmix_from: int) -> List[dict]:
        """Rows ``[0, cutmix_from)`` MixUp, the others CutMix."""
        n = len(indices)
        images = [self.dataset[i] for i in indices]
        mix = np.random.rand() < self.mix_prob and (self.partners == 'distinct'
                                                    or n > 1)
        if self.augment_before_mix or not mix:
            images = [self.augment(r) for r in images]
        # soft labels too: single reads (RepeatDataset) share batches
        if not mix:
            return [
                self.pack(
                    dict(r, gt_score=self._score(r, r, 1.)) if self.mix_prob >
                    0 else r) for r in images
            ]
        if self.partners == 'distinct':
            others = [self._other(i) for i in indices]
            seconds = [self.dataset[j] for j in others]
            if self.augment_before_mix:
                seconds = [self.augment(r) for r in seconds]
        else:
            order = np.random.permutation(n)
            partner = np.empty(n, dtype=np.int64)
            partner[order] = np.roll(order, -1)
            seconds = [images[j] for j in partner]
        out = []
        for k, (first, second) in enumerate(zip(images, seconds)):
            mixed = self._mix(first, second, cutmix=k >= cutmix_from)
            if not self.augment_before_mix:
                mixed = self.augment(mixed)
            packed = self.pack(mixed)
            packed['data_samples'].set_metainfo(mixed['mix_info'])
            out.append(packed)
        return out

    def _other(self, idx: int) -> int:
        """A uniformly random index other than ``idx``."""
        j = np.random.randint(len(self.dataset) - 1)
        return j + (j >= idx)

    def _mix(self, first: dict, second: dict, cutmix: bool) -> dict:
        """Mix two results dicts into a new one with ``gt_score``."""
        a, b = first['img'], second['img']
        if a.shape != b.shape:
            raise ValueError('MixupCutMixDataset: images to mix must have one '
                             f'size, got {a.shape} and {b.shape}; end the '
                             "dataset's pipeline with a fixed-size crop.")
        h, w = a.shape[:2]
        if cutmix:
            # DeepMind's cutmix_padding: uniform area, uniform centre
            cx, cy = np.random.randint(w), np.random.randint(h)
            side = np.sqrt(1. - np.random.rand())
            cut_w, cut_h = int(side * w), int(side * h)
            x1, x2 = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, w)
            y1, y2 = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, h)
            img = b.copy()
            img[y1:y2, x1:x2] = a[y1:y2, x1:x2]
            ratio = (y2 - y1) * (x2 - x1) / (h * w)
            info = dict(
                mix_mode='cutmix',
                mix_box=tuple(int(v) for v in (y1, y2, x1, x2)))
        else:
            ratio = np.random.beta(self.mixup_alpha, self.mixup_alpha)
            blend = ratio * a.astype(np.float32) + (1 - ratio) * b.astype(
                np.float32)
            # clip, then truncate as TF's cast to uint8 does
            img = np.clip(blend, 0, 255).astype(np.uint8)
            info = dict(mix_mode='mixup')
        info['mix_ratio'] = float(ratio)
        return dict(
            first,
            img=img,
            gt_score=self._score(first, second, ratio),
            mix_info=info)

    def _score(self, first: dict, second: dict, ratio: float) -> np.ndarray:
        """Soft label mixing ``first`` (``ratio``) and ``second``."""
        score = np.zeros(self.num_classes, dtype=np.float32)
        score[int(first['gt_label'])] += ratio
        score[int(second['gt_label'])] += 1 - ratio
        return score

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(partners={self.partners!r}, '
                f'augment_before_mix={self.augment_before_mix}, '
                f'mixup_alpha={self.mixup_alpha}, mix_prob={self.mix_prob}, '
                f'augment={self.augment})')

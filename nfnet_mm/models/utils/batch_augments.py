"""Half-MixUp / half-CutMix batch augment (Brock et al., 2021, App. A).

The NFNet recipe mixes *every* batch: MixUp on one half of the batch and
CutMix on the other half. MMPretrain's ``RandomBatchAugment`` picks one
augment per batch; with :class:`HalfMixupHalfCutMix` as its only augment it
is applied to every batch::

    data_preprocessor = dict(
        type='ClsDataPreprocessor', num_classes=1000, ...,
        batch_augments=dict(augments=[
            dict(type='HalfMixupHalfCutMix', mixup_alpha=0.2,
                 cutmix_alpha=1.0)
        ]))

Deviation from the reference: DeepMind's pipeline mixes pairs of distinct
examples drawn from a batch twice as large; here the partner of an example
is another example of the same half (a random cyclic shift of a random
order, so no example is paired with itself when the half has two or more
examples). RandAugment runs per image in the data pipeline, i.e. *before*
mixing (DeepMind's default ``augment_before_mix=True``).
"""
from typing import Tuple

import numpy as np
import torch

from mmpretrain.registry import BATCH_AUGMENTS

__all__ = ['HalfMixupHalfCutMix']


@BATCH_AUGMENTS.register_module()
class HalfMixupHalfCutMix:
    r"""MixUp on the first half of a batch, CutMix on the second half.

    - MixUp rows ``[0, N // 2)``: each row ``i`` gets its own
      :math:`\lambda_i \sim \mathrm{Beta}(\alpha_m, \alpha_m)` and becomes
      :math:`\lambda_i x_i + (1 - \lambda_i) x_{p(i)}`.
    - CutMix rows ``[N // 2, N)``: each row gets its own box, sized by
      :math:`u \sim \mathrm{Beta}(\alpha_c, \alpha_c)` (side ratio
      :math:`\sqrt{1 - u}`, centre uniform over the image, clipped at the
      borders, as in DeepMind's ``cutmix_padding``) and filled with the
      partner's pixels; :math:`\lambda_i` is the kept area fraction.
    - Scores: :math:`\lambda_i y_i + (1 - \lambda_i) y_{p(i)}`; rows of the
      input scores that sum to 1 give mixed rows that sum to 1. Label
      smoothing is linear, so applying it in the loss afterwards
      (``LabelSmoothLoss``) equals the reference's smoothing of the labels
      before mixing.

    ``p`` pairs each row with another row of the same half. The reference
    draws CutMix areas from a uniform distribution (Beta(1, 1)) and MixUp
    ratios from Beta(0.2, 0.2).

    Args:
        mixup_alpha (float): Beta parameter of the MixUp ratio.
            Defaults to 0.2.
        cutmix_alpha (float): Beta parameter of the CutMix area.
            Defaults to 1.0 (uniform, DeepMind's choice).
    """

    def __init__(self, mixup_alpha: float = 0.2, cutmix_alpha: float = 1.0):
        for name, value in (('mixup_alpha', mixup_alpha),
                            ('cutmix_alpha', cutmix_alpha)):
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f'HalfMixupHalfCutMix: {name} must be a '
                                 f'positive number, got {value!r}.')
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)

    @staticmethod
    def partners(n: int, device=None) -> torch.Tensor:
        """Partner indices for ``n`` rows (a random cyclic derangement).

        Args:
            n (int): The number of rows.
            device (torch.device, optional): Device of the result.

        Returns:
            torch.Tensor: ``p`` with ``p[i] != i`` when ``n >= 2``.
        """
        order = torch.randperm(n, device=device)
        partner = torch.empty_like(order)
        partner[order] = order.roll(-1)
        return partner

    def mixup(self, inputs: torch.Tensor, scores: torch.Tensor
              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MixUp with one ratio per row.

        Args:
            inputs (torch.Tensor): Images ``(n, C, H, W)``.
            scores (torch.Tensor): Soft labels ``(n, num_classes)``.

        Returns:
            tuple: Mixed images, mixed scores and the ratios ``lam``.
        """
        n = inputs.size(0)
        partner = self.partners(n, inputs.device)
        lam = torch.from_numpy(
            np.random.beta(self.mixup_alpha, self.mixup_alpha,
                           size=n)).to(inputs.device, torch.float32)
        lam_img = lam.view(n, *([1] * (inputs.dim() - 1))).to(inputs.dtype)
        mixed = lam_img * inputs + (1 - lam_img) * inputs[partner]
        lam_s = lam.view(n, 1).to(scores.dtype)
        mixed_scores = lam_s * scores + (1 - lam_s) * scores[partner]
        return mixed, mixed_scores, lam

    def cutmix(self, inputs: torch.Tensor, scores: torch.Tensor
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """CutMix with one box per row.

        Args:
            inputs (torch.Tensor): Images ``(n, C, H, W)``.
            scores (torch.Tensor): Soft labels ``(n, num_classes)``.

        Returns:
            tuple: Mixed images, mixed scores and the kept fractions ``lam``.
        """
        n, h, w = inputs.size(0), inputs.size(-2), inputs.size(-1)
        device = inputs.device
        partner = self.partners(n, device)
        area = np.random.beta(self.cutmix_alpha, self.cutmix_alpha, size=n)
        side = np.sqrt(1.0 - area)
        cut_h = (side * h).astype(np.int64)
        cut_w = (side * w).astype(np.int64)
        cy = np.random.randint(0, h, size=n)
        cx = np.random.randint(0, w, size=n)
        y1 = torch.from_numpy(np.clip(cy - cut_h // 2, 0, h)).to(device)
        y2 = torch.from_numpy(np.clip(cy + cut_h // 2, 0, h)).to(device)
        x1 = torch.from_numpy(np.clip(cx - cut_w // 2, 0, w)).to(device)
        x2 = torch.from_numpy(np.clip(cx + cut_w // 2, 0, w)).to(device)
        ys = torch.arange(h, device=device).view(1, h, 1)
        xs = torch.arange(w, device=device).view(1, 1, w)
        box = ((ys >= y1.view(n, 1, 1)) & (ys < y2.view(n, 1, 1))
               & (xs >= x1.view(n, 1, 1)) & (xs < x2.view(n, 1, 1)))
        box = box.unsqueeze(1)  # (n, 1, h, w): True = partner's pixels
        mixed = torch.where(box, inputs[partner], inputs)
        lam = 1.0 - box.flatten(1).float().mean(dim=1)
        lam_s = lam.view(n, 1).to(scores.dtype)
        mixed_scores = lam_s * scores + (1 - lam_s) * scores[partner]
        return mixed, mixed_scores, lam

    def __call__(self, batch_inputs: torch.Tensor, batch_scores: torch.Tensor
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mix a batch.

        Args:
            batch_inputs (torch.Tensor): Images ``(N, C, H, W)``.
            batch_scores (torch.Tensor): One-hot or soft labels
                ``(N, num_classes)``.

        Returns:
            Tuple[torch.Tensor, torch.Tensor]: Mixed images and scores.
        """
        if batch_inputs.dim() != 4:
            raise ValueError('HalfMixupHalfCutMix expects images (N, C, H, '
                             f'W), got shape {tuple(batch_inputs.shape)}.')
        if batch_scores.dim() != 2 or \
                batch_scores.size(0) != batch_inputs.size(0):
            raise ValueError(
                'HalfMixupHalfCutMix expects scores (N, num_classes) with N '
                f'= {batch_inputs.size(0)}, got shape '
                f'{tuple(batch_scores.shape)}.')
        batch_scores = batch_scores.float()
        half = batch_inputs.size(0) // 2
        mix_x, mix_y, _ = self.mixup(batch_inputs[:half], batch_scores[:half])
        cut_x, cut_y, _ = self.cutmix(batch_inputs[half:],
                                      batch_scores[half:])
        return torch.cat([mix_x, cut_x]), torch.cat([mix_y, cut_y])

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(mixup_alpha={self.mixup_alpha}, '
                f'cutmix_alpha={self.cutmix_alpha})')

"""The NFNet classification head."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.heads import LinearClsHead
from mmpretrain.registry import MODELS

__all__ = ['NFNetClsHead']


@MODELS.register_module()
class NFNetClsHead(LinearClsHead):
    """NFNet classifier: dropout, then a linear layer with bias.

    Weight init N(0, 0.01), bias 0 (as the reference code); fp32 logits
    (also under autocast). Use it after a ``GlobalAveragePooling`` neck.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Input feature channels (3072 for NFNet-F0).
        dropout_rate (float): Dropout before the classifier (F0 0.2, F1 0.3,
            F2/F3 0.4, F4+ 0.5). Defaults to 0.
        init_cfg (dict, optional): Initialization config. Defaults to
            ``dict(type='Normal', layer='Linear', std=0.01, bias=0.)``.
        **kwargs: ``loss``, ``topk``, ``cal_acc`` of ``ClsHead``.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 dropout_rate: float = 0.,
                 init_cfg: Optional[dict] = dict(
                     type='Normal', layer='Linear', std=0.01, bias=0.),
                 **kwargs) -> None:
        super().__init__(
            num_classes=num_classes,
            in_channels=in_channels,
            init_cfg=init_cfg,
            **kwargs)
        if not 0. <= dropout_rate < 1.:
            raise ValueError(
                f'dropout_rate must be in [0, 1), got {dropout_rate}')
        self.dropout_rate = dropout_rate
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else None
        # the paper's init also without init_weights()
        nn.init.normal_(self.fc.weight, 0., 0.01)
        nn.init.zeros_(self.fc.bias)

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """The last feature, after dropout (in training)."""
        x = feats[-1]
        if self.dropout is not None:
            x = self.dropout(x)
        return x

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """Logits, in fp32."""
        return self.fc(self.pre_logits(feats)).float()

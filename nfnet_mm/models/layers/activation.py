"""Activations with the variance-preserving gain gamma.

NF-networks multiply every activation by a fixed gain ``gamma`` chosen so
that, for a unit-Gaussian input, the scaled output has unit variance
(Brock et al., 2021, Sec. 3 and DeepMind's ``nfnets/base.py``). Followed by a
scaled weight-standardised convolution this keeps the signal variance
constant through the network.
"""
import copy
from typing import Dict, Optional

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer

__all__ = ['ACTIVATION_GAMMAS', 'get_activation_gamma', 'GammaAct',
           'build_gamma_act']

# Gains for unit-Gaussian inputs, keyed by MMCV activation type names
# (values from the paper's reference code). MMCV's ``Swish`` is SiLU.
# The GELU value was computed for the tanh approximation
# (``jax.nn.gelu``); it is used for the exact (erf) GELU too, the two
# differ by less than 1e-3 in the resulting gain.
ACTIVATION_GAMMAS: Dict[str, float] = {
    'GELU': 1.7015043497085571,
    'ReLU': 1.7139588594436646,
    'SiLU': 1.7881293296813965,
    'Swish': 1.7881293296813965,
    'ELU': 1.2716004848480225,
    'CELU': 1.270926833152771,
    'LeakyReLU': 1.70590341091156,
    'ReLU6': 1.7131484746932983,
    'SELU': 1.0008515119552612,
    'Sigmoid': 4.803835391998291,
    'Softplus': 1.9203323125839233,
    'Tanh': 1.5939117670059204,
    'Identity': 1.0,
}


def get_activation_gamma(act_cfg: dict) -> float:
    """Look up the gain gamma of an activation config.

    An explicit ``gamma`` key in ``act_cfg`` wins (use it for an activation
    with non-default parameters, e.g. a LeakyReLU with another slope).

    Args:
        act_cfg (dict): MMCV activation config, e.g. ``dict(type='GELU')``.

    Returns:
        float: The gain gamma.

    Raises:
        ValueError: If the activation type has no known gamma.
    """
    if 'gamma' in act_cfg:
        return float(act_cfg['gamma'])
    act_type = act_cfg.get('type')
    if not isinstance(act_type, str):
        act_type = getattr(act_type, '__name__', str(act_type))
    if act_type not in ACTIVATION_GAMMAS:
        raise ValueError(
            f'No known NF gain gamma for activation type {act_type!r}; '
            f'known types: {sorted(ACTIVATION_GAMMAS)} (or pass '
            f"an explicit 'gamma' in act_cfg).")
    return ACTIVATION_GAMMAS[act_type]


class GammaAct(nn.Module):
    """An activation followed by a multiplication with a fixed gain.

    Args:
        act_cfg (dict): MMCV activation config. A ``gamma`` key, if present,
            overrides the looked-up gain. Defaults to
            ``dict(type='GELU', approximate='tanh')``.
        gamma (float, optional): The gain; if None it is looked up from
            ``act_cfg`` with :func:`get_activation_gamma`. Defaults to None.
    """

    def __init__(self,
                 act_cfg: Optional[dict] = None,
                 gamma: Optional[float] = None) -> None:
        super().__init__()
        if act_cfg is None:
            act_cfg = dict(type='GELU', approximate='tanh')
        act_cfg = copy.deepcopy(act_cfg)
        if gamma is None:
            gamma = get_activation_gamma(act_cfg)
        act_cfg.pop('gamma', None)
        act_cfg.pop('inplace', None)  # inputs are reused (shortcuts)
        if act_cfg.get('type') == 'Identity':
            self.act = nn.Identity()
        else:
            self.act = build_activation_layer(act_cfg)
        self.gamma = float(gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the activation and scale by gamma."""
        if self.gamma == 1.0:
            return self.act(x)
        return self.act(x) * self.gamma

    def extra_repr(self) -> str:
        return f'gamma={self.gamma}'


def build_gamma_act(act_cfg: dict, gamma: Optional[float] = None) -> GammaAct:
    """Build a :class:`GammaAct` (activation times its NF gain).

    Args:
        act_cfg (dict): MMCV activation config.
        gamma (float, optional): Explicit gain; looked up if None.
            Defaults to None.

    Returns:
        GammaAct: The scaled activation.
    """
    return GammaAct(act_cfg, gamma=gamma)

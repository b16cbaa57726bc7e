"""Activation gains gamma: unit output variance for a unit-Gaussian input.

Brock et al., 2021, Sec. 3 and DeepMind's ``nfnets/base.py``.
"""
from typing import Dict

import torch.nn as nn
from mmcv.cnn import build_activation_layer

__all__ = ['ACTIVATION_GAMMAS', 'get_activation_gamma', 'build_plain_act']

# From the reference code, by MMCV type name (``Swish`` is SiLU). GELU's is
# for the tanh form (``jax.nn.gelu``), used for erf GELU too (< 1e-3 apart).
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

    An explicit ``gamma`` key wins (e.g. for a LeakyReLU of another slope).

    Args:
        act_cfg (dict): MMCV activation config, e.g. ``dict(type='GELU')``.
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


def build_plain_act(act_cfg: dict) -> nn.Module:
    """The plain activation of ``act_cfg`` (``gamma``, ``inplace`` dropped).

    A known type is torch's class of that name if any, else MMCV's.
    """
    kwargs = {
        k: v
        for k, v in act_cfg.items() if k not in ('gamma', 'inplace')
    }
    act_type = kwargs.pop('type', None)
    if act_type in ACTIVATION_GAMMAS and hasattr(nn, act_type):
        return getattr(nn, act_type)(**kwargs)
    return build_activation_layer(dict(kwargs, type=act_type))

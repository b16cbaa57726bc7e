"""The NFNet backbone (Brock et al., ICML 2021, arXiv:2102.06171)."""
import copy
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..layers.activation import build_plain_act, get_activation_gamma
from ..layers.ws_conv import PADDING_MODES, ScaledWSConv2d

__all__ = ['NFNet', 'NFBlock', 'SqueezeExcite', 'StochasticDepth']

# NFNet-F0; every other variant (and a custom arch dict) states what differs
_F0 = dict(
    depths=[1, 2, 6, 3],
    widths=[256, 512, 1536, 1536],
    group_width=128,
    bottleneck_ratio=0.5,
    se_ratio=0.5,
    alpha=0.2,
    stem_widths=[16, 32, 64, 128],
    stem_strides=[2, 1, 1, 2],
    strides=[1, 2, 2, 2],
    final_expansion=2)


class StochasticDepth(nn.Module):
    """DeepMind's stochastic depth: drop a sample's residual, no rescale.

    Unlike timm's ``DropPath`` a kept residual is **not** divided by the keep
    probability (DeepMind's ``StochDepth(scale_by_keep_rate=False)``). Works
    on any batch-first tensor (:class:`NFBlock` drops the residual's gate).

    Args:
        drop_rate (float): Probability of dropping. Defaults to 0.
    """

    def __init__(self, drop_rate: float = 0.) -> None:
        super().__init__()
        if not 0. <= drop_rate < 1.:
            raise ValueError(f'drop_rate must be in [0, 1), got {drop_rate}')
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_rate == 0.:
            return x
        keep = torch.empty(
            (x.shape[0], ) + (1, ) * (x.ndim - 1),
            dtype=x.dtype,
            device=x.device)
        keep.bernoulli_(1. - self.drop_rate)
        return x * keep

    def extra_repr(self) -> str:
        return f'drop_rate={self.drop_rate}'


class SqueezeExcite(nn.Module):
    """Squeeze-Excite gate of NFNets: ``2 * sigmoid(fc2(relu(fc1(mean))))``.

    Returns the gate ``[N, C, 1, 1]``, not the gated input.

    Args:
        channels (int): Input/output channels.
        hidden_channels (int): Hidden width.
    """

    def __init__(self, channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden_channels)
        self.fc2 = nn.Linear(hidden_channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3)))))
        return (2. * torch.sigmoid(s))[:, :, None, None]


class NFBlock(nn.Module):
    """Normalizer-free pre-activation bottleneck block (NFNet-F).

    ``out = x + alpha * skip_gain * SE(f(gamma * act(x) * beta))``, ``f`` =
    conv 1x1, 3x3 grouped (strided), 3x3 grouped, 1x1, with ``gamma * act``
    between. A transition block's shortcut is
    ``conv1x1(avgpool2x2(gamma * act(x) * beta))`` (pool only if strided).
    ``gamma`` and ``beta`` are the convs' ``input_scale``.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Stride of the first 3x3 conv and the shortcut pool.
        alpha (float): Residual branch scale.
        beta (float): ``1 / expected_std`` of the input.
        group_width (int): Channels per group of the 3x3 convs.
        bottleneck_ratio (float): Bottleneck width / ``out_channels``.
        se_ratio (float): SE hidden width / ``out_channels``.
        act (nn.Module): The plain activation (shared, parameter-free).
        gamma (float): The activation's gain.
        conv_cfg (dict): ``padding`` and ``eps`` of the convs.
        drop_path_rate (float): Stochastic depth rate. Defaults to 0.
        transition (bool): First block of a stage. Defaults to False.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int,
                 alpha: float,
                 beta: float,
                 group_width: int,
                 bottleneck_ratio: float,
                 se_ratio: float,
                 act: nn.Module,
                 gamma: float,
                 conv_cfg: dict,
                 drop_path_rate: float = 0.,
                 transition: bool = False) -> None:
        super().__init__()
        # the bottleneck width rounds down to a multiple of group_width (DM)
        groups = int(out_channels * bottleneck_ratio) // group_width
        if groups < 1:
            raise ValueError(
                f'Bottleneck width {int(out_channels * bottleneck_ratio)} '
                f'(= {out_channels} x {bottleneck_ratio}) is smaller than '
                f'group_width {group_width}.')
        mid = groups * group_width
        self.alpha = alpha
        self.beta = beta
        self.act = act
        self.conv1 = ScaledWSConv2d(
            in_channels, mid, 1, input_scale=gamma * beta, **conv_cfg)
        conv_cfg = dict(conv_cfg, input_scale=gamma)
        self.conv2 = ScaledWSConv2d(
            mid, mid, 3, stride=stride, groups=groups, **conv_cfg)
        self.conv2b = ScaledWSConv2d(mid, mid, 3, groups=groups, **conv_cfg)
        self.conv3 = ScaledWSConv2d(mid, out_channels, 1, **conv_cfg)
        self.se = SqueezeExcite(out_channels,
                                max(1, int(out_channels * se_ratio)))
        self.drop_path = StochasticDepth(drop_path_rate)
        self.skip_gain = nn.Parameter(torch.zeros(()))
        self.shortcut = None
        if stride > 1 or in_channels != out_channels:
            if not transition:
                raise ValueError('Only a transition block may change the '
                                 'shape.')
            pool = (
                nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False)
                if stride > 1 else nn.Identity())
            self.shortcut = nn.Sequential(
                OrderedDict(
                    pool=pool,
                    conv=ScaledWSConv2d(
                        in_channels, out_channels, 1,
                        **dict(conv_cfg, input_scale=gamma * beta))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(x)
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.act(out))
        out = self.conv2b(self.act(out))
        out = self.conv3(self.act(out))
        scale = self.drop_path(self.se(out)) * (self.skip_gain * self.alpha)
        return torch.addcmul(shortcut, out, scale)


@MODELS.register_module()
class NFNet(BaseModule):
    """NFNet backbone (normalizer-free SE-ResNeXt-D, NFNet-F0 ... F7).

    `High-Performance Large-Scale Image Recognition Without Normalization
    <https://arxiv.org/abs/2102.06171>`_. Output ``i`` (0-2) is the residual
    stream after stage ``i + 1``; output 3 is
    ``gamma * act(final_conv(stage4))``. Strides 4, 8, 16, 32. Stages after
    the last output are not run.

    Args:
        arch (str | dict): ``'f0'`` ... ``'f7'``, ``'f4+'`` or a dict of the
            keys that differ from F0's. Defaults to ``'f0'``.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (int | Sequence[int]): Output indices; negatives count
            from the end. Defaults to ``(3, )``.
        frozen_stages (int): -1: none, 0: the stem, ``k``: the stem and ``k``
            stages (all: and ``final_conv``). Defaults to -1.
        drop_path_rate (float): Stochastic depth, block ``i`` of ``N`` gets
            ``rate * i / N``; no rescale (DeepMind). Defaults to 0.
        act_cfg (dict): MMCV activation config (optional ``gamma`` key).
            Defaults to ``dict(type='GELU', approximate='tanh')``.
        padding (str): ``'same'`` (TF SAME, needed for DeepMind/timm weights)
            or ``'symmetric'``. Defaults to ``'same'``.
        ws_eps (float): Lower bound of ``var * fan_in``. Defaults to 1e-4.
        with_cp (bool): Gradient checkpointing per block. Defaults to False.
        init_cfg (dict | list[dict], optional): Initialization config.
            Defaults to None.
    """

    arch_settings: Dict[str, dict] = {
        **{
            f'f{n}': dict(_F0, depths=[d * (n + 1) for d in _F0['depths']])
            for n in range(8)
        },
        'f4+':
        dict(_F0, depths=[5, 10, 30, 15], widths=[384, 768, 2048, 2048]),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'f0',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (3, ),
                 frozen_stages: int = -1,
                 drop_path_rate: float = 0.,
                 act_cfg: dict = dict(type='GELU', approximate='tanh'),
                 padding: str = 'same',
                 ws_eps: float = 1e-4,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch = arch = self.parse_arch(arch)
        num_stages = len(arch['depths'])
        if padding not in PADDING_MODES:
            raise ValueError(
                f'Invalid padding {padding!r}; valid: {PADDING_MODES}.')
        if not 0. <= drop_path_rate < 1.:
            raise ValueError(
                f'drop_path_rate must be in [0, 1), got {drop_path_rate}.')
        self.num_stages = num_stages
        self.out_indices = self._parse_out_indices(out_indices, num_stages)
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages must be in [-1, {num_stages}], '
                             f'got {frozen_stages}.')
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp
        self.deploy = False
        self.gamma = get_activation_gamma(act_cfg)
        self.act = build_plain_act(act_cfg)  # parameter-free, shared
        conv_cfg = dict(padding=padding, eps=ws_eps)
        alpha = arch['alpha']

        stem = OrderedDict()
        for i, (width, stride) in enumerate(
                zip(arch['stem_widths'], arch['stem_strides'])):
            if i > 0:
                stem[f'act{i}'] = self.act
            stem[f'conv{i + 1}'] = ScaledWSConv2d(
                in_channels,
                width,
                3,
                stride=stride,
                input_scale=self.gamma if i > 0 else 1.,
                **conv_cfg)
            in_channels = width
        self.stem = nn.Sequential(stem)

        num_blocks = sum(arch['depths'])
        block_idx = 0
        expected_std = 1.
        self.stages = nn.ModuleList()
        for depth, width, stride in zip(arch['depths'], arch['widths'],
                                        arch['strides']):
            blocks = []
            for b in range(depth):
                blocks.append(
                    NFBlock(
                        in_channels,
                        width,
                        stride=stride if b == 0 else 1,
                        alpha=alpha,
                        beta=1. / expected_std,
                        group_width=arch['group_width'],
                        bottleneck_ratio=arch['bottleneck_ratio'],
                        se_ratio=arch['se_ratio'],
                        act=self.act,
                        gamma=self.gamma,
                        conv_cfg=conv_cfg,
                        drop_path_rate=drop_path_rate * block_idx / num_blocks,
                        transition=b == 0))
                if b == 0:
                    expected_std = 1.
                expected_std = (expected_std**2 + alpha**2)**0.5
                block_idx += 1
                in_channels = width
            self.stages.append(nn.Sequential(*blocks))
        self.num_features = int(arch['final_expansion'] * in_channels)
        self.final_conv = ScaledWSConv2d(in_channels, self.num_features, 1,
                                         **conv_cfg)
        self.out_channels = list(arch['widths'][:-1]) + [self.num_features]
        self._freeze_stages()

    @classmethod
    def parse_arch(cls, arch: Union[str, dict]) -> dict:
        """The full arch dict of a variant name or of a partial dict."""
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_settings:
                raise ValueError(f'Unknown NFNet arch {arch!r}; valid names: '
                                 f'{sorted(cls.arch_settings)} (or a dict).')
            return copy.deepcopy(cls.arch_settings[arch.lower()])
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch)}')
        unknown = sorted(set(arch) - set(_F0))
        if unknown:
            raise ValueError(f'Unknown arch keys {unknown}; valid: '
                             f'{list(_F0)}.')
        arch = copy.deepcopy({**_F0, **arch})
        for a, b in (('depths', 'widths'), ('depths', 'strides'),
                     ('stem_widths', 'stem_strides')):
            if len(arch[a]) != len(arch[b]):
                raise ValueError(f'arch {a!r} and {b!r} differ in length: '
                                 f'{arch[a]} vs {arch[b]}.')
        if min(arch['depths']) < 1 or arch['final_expansion'] <= 0:
            raise ValueError(
                'arch depths must be >= 1 and final_expansion > 0, got '
                f"{arch['depths']} and {arch['final_expansion']}.")
        return arch

    @staticmethod
    def _parse_out_indices(out_indices: Union[int, Sequence[int]],
                           num_stages: int) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        out_indices = tuple(out_indices)
        if not out_indices:
            raise ValueError('out_indices must not be empty.')
        result = []
        for index in out_indices:
            if not isinstance(index,
                              int) or not (-num_stages <= index < num_stages):
                raise ValueError(
                    f'Invalid out_indices entry {index!r}; valid: '
                    f'{-num_stages} ... {num_stages - 1}.')
            result.append(index % num_stages)
        return tuple(sorted(set(result)))

    def _freeze_stages(self) -> None:
        modules = []
        if self.frozen_stages >= 0:
            modules.append(self.stem)
        modules.extend(self.stages[:max(self.frozen_stages, 0)])
        if self.frozen_stages == self.num_stages:
            modules.append(self.final_conv)
        for module in modules:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'NFNet':
        """Set the mode; frozen stages stay in eval mode."""
        super().train(mode)
        self._freeze_stages()
        return self

    def _run_stage(self, stage: nn.Sequential,
                   x: torch.Tensor) -> torch.Tensor:
        for block in stage:
            if self.with_cp and self.training and torch.is_grad_enabled():
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Return the outputs of ``out_indices`` as a tuple."""
        x = self.stem(x)
        outs = []
        last = self.out_indices[-1]
        for i, stage in enumerate(self.stages):
            if i > last:
                break
            x = self._run_stage(stage, x)
            if i == self.num_stages - 1:
                x = self.act(self.final_conv(x)) * self.gamma
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def switch_to_deploy(self) -> None:
        """Fold the weight standardisation into plain conv weights."""
        for module in self.modules():
            if isinstance(module, ScaledWSConv2d):
                module.switch_to_deploy()
        self.deploy = True

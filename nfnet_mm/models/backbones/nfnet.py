"""The NFNet backbone (Brock et al., ICML 2021, arXiv:2102.06171)."""
import copy
import math
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..layers.activation import build_plain_act, get_activation_gamma
from ..layers.ws_conv import PADDING_MODES, ScaledWSConv2d

__all__ = [
    'NFNet', 'NFResNet', 'NFRegNet', 'NFBlock', 'SqueezeExcite',
    'EfficientChannelAttention', 'StochasticDepth', 'make_divisible'
]

# NFNet-F0 (DeepMind's layout); every other arch states what differs
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
    final_expansion=2,
    final_width=None,  # overrides final_expansion; 0: no final conv
    stem_kernel=3,
    stem_pool=False,  # 3x3/2 max pool after the stem (NF-ResNet)
    extra_conv=True,  # the second grouped 3x3 (conv2b)
    attention='se',  # 'se', 'eca' or None
    attn_in_bottleneck=False,  # SE between conv2 and conv3 (NF-RegNet)
    bottleneck_of_input=False,  # mid = ratio x input width (NF-RegNet)
    style='deepmind',
    act=dict(type='GELU', approximate='tanh'))
# timm's layout: gamma folded into every conv (also the stem's first and the
# final conv), a zero-initialised last gain instead of SkipInit, rescaled
# drop-path, channels rounded to multiples of 8; symmetric padding, SiLU
_TIMM = dict(style='timm', act=dict(type='SiLU'))
_L = dict(
    _F0,
    **_TIMM,
    group_width=64,
    bottleneck_ratio=0.25,
    se_ratio=0.25,
    final_expansion=1.5)


def make_divisible(value: float,
                   divisor: int = 8,
                   round_limit: float = 0.9) -> int:
    """timm's channel rounding: nearest multiple of ``divisor``, at least
    ``divisor``, one more if that loses over ``1 - round_limit``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < round_limit * value else rounded


class StochasticDepth(nn.Module):
    """Stochastic depth: drop a sample's residual.

    DeepMind's (default) does **not** divide a kept residual by the keep
    probability; timm's ``DropPath`` does (``scale_by_keep=True``). Works on
    any batch-first tensor (:class:`NFBlock` drops the residual's scale).

    Args:
        drop_rate (float): Probability of dropping. Defaults to 0.
        scale_by_keep (bool): Divide kept samples by ``1 - drop_rate``.
            Defaults to False.
    """

    def __init__(self,
                 drop_rate: float = 0.,
                 scale_by_keep: bool = False) -> None:
        super().__init__()
        if not 0. <= drop_rate < 1.:
            raise ValueError(f'drop_rate must be in [0, 1), got {drop_rate}')
        self.drop_rate = drop_rate
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_rate == 0.:
            return x
        keep = torch.empty(
            (x.shape[0], ) + (1, ) * (x.ndim - 1),
            dtype=x.dtype,
            device=x.device)
        keep.bernoulli_(1. - self.drop_rate)
        if self.scale_by_keep:
            keep.div_(1. - self.drop_rate)
        return x * keep

    def extra_repr(self) -> str:
        return (f'drop_rate={self.drop_rate}, '
                f'scale_by_keep={self.scale_by_keep}')


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


class EfficientChannelAttention(nn.Module):
    """ECA gate (Wang et al., 2020) with the NF gain 2:
    ``2 * sigmoid(conv1d(mean))``, kernel ``odd(int((log2(C) + 1) / 2))``,
    at least 3. Returns the gate ``[N, C, 1, 1]``.

    Args:
        channels (int): Input/output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = int((math.log2(channels) + 1) / 2)
        k = max(k if k % 2 else k + 1, 3)
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.conv(x.mean(dim=(2, 3))[:, None])[:, 0]
        return (2. * torch.sigmoid(s))[:, :, None, None]


class NFBlock(nn.Module):
    """Normalizer-free pre-activation bottleneck block (every NF family).

    ``out = x + alpha * skip_gain * A(f(gamma * act(x) * beta))``, ``f`` =
    conv 1x1, 3x3 (grouped, strided), [3x3 grouped,] 1x1 with ``gamma * act``
    between, ``A`` the attention gate after the last conv (SE/ECA), or SE
    before the last conv (``attn_in_bottleneck``). A transition block's
    shortcut is ``conv1x1(avgpool2x2(gamma * act(x) * beta))`` (pool only if
    strided). ``gamma`` and ``beta`` are the convs' ``input_scale``. timm's
    style has no ``skip_gain``: the last conv's gain starts at 0.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Stride of the first 3x3 conv and the shortcut pool.
        alpha (float): Residual branch scale.
        beta (float): ``1 / expected_std`` of the input.
        group_width (int): Channels per group of the 3x3 convs (0: none).
        bottleneck_ratio (float): Bottleneck width / ``out_channels`` (or
            ``in_channels`` with ``bottleneck_of_input``).
        se_ratio (float): SE hidden width / its input width.
        act (nn.Module): The plain activation (shared, parameter-free).
        gamma (float): The activation's gain.
        conv_cfg (dict): ``padding`` and ``eps`` of the convs.
        drop_path_rate (float): Stochastic depth rate. Defaults to 0.
        transition (bool): First block of a stage. Defaults to False.
        attention (str, optional): ``'se'``, ``'eca'`` or None.
            Defaults to ``'se'``.
        extra_conv (bool): Two 3x3 convs. Defaults to True.
        attn_in_bottleneck (bool): SE between the 3x3 and the last conv.
            Defaults to False.
        bottleneck_of_input (bool): See ``bottleneck_ratio``.
            Defaults to False.
        style (str): ``'deepmind'`` or ``'timm'`` (rounding, residual init,
            drop-path). Defaults to ``'deepmind'``.
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
                 transition: bool = False,
                 attention: Optional[str] = 'se',
                 extra_conv: bool = True,
                 attn_in_bottleneck: bool = False,
                 bottleneck_of_input: bool = False,
                 style: str = 'deepmind') -> None:
        super().__init__()
        timm = style == 'timm'
        mid = (in_channels
               if bottleneck_of_input else out_channels) * bottleneck_ratio
        mid = make_divisible(mid) if timm else int(mid)
        groups = mid // group_width if group_width else 1
        if groups < 1:
            raise ValueError(
                f'Bottleneck width {mid} (= {bottleneck_ratio} x the '
                f'width) is smaller than group_width {group_width}.')
        if group_width and (not timm or group_width % 8 == 0):
            mid = groups * group_width  # round down to whole groups
        self.alpha = alpha
        self.beta = beta
        self.act = act
        self.conv1 = ScaledWSConv2d(
            in_channels, mid, 1, input_scale=gamma * beta, **conv_cfg)
        conv_cfg = dict(conv_cfg, input_scale=gamma)
        self.conv2 = ScaledWSConv2d(
            mid, mid, 3, stride=stride, groups=groups, **conv_cfg)
        self.conv2b = ScaledWSConv2d(
            mid, mid, 3, groups=groups, **conv_cfg) if extra_conv else None
        self.conv3 = ScaledWSConv2d(
            mid, out_channels, 1, gain_init=0. if timm else 1., **conv_cfg)
        attn_width = mid if attn_in_bottleneck else out_channels
        self.attn_in_bottleneck = attn_in_bottleneck
        self.se = self.eca = None
        if attention == 'se':
            hidden = attn_width * se_ratio
            self.se = SqueezeExcite(
                attn_width,
                make_divisible(hidden, round_limit=0.) if timm else max(
                    1, int(hidden)))
        elif attention == 'eca':
            self.eca = EfficientChannelAttention(attn_width)
        elif attention is not None:
            raise ValueError(f"attention must be 'se', 'eca' or None, got "
                             f'{attention!r}.')
        self.drop_path = StochasticDepth(drop_path_rate, scale_by_keep=timm)
        self.skip_gain = None if timm else nn.Parameter(torch.zeros(()))
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
        out = self.conv2(self.act(self.conv1(out)))
        if self.conv2b is not None:
            out = self.conv2b(self.act(out))
        attn = self.se if self.se is not None else self.eca
        if attn is not None and self.attn_in_bottleneck:
            out, attn = out * attn(out), None
        out = self.conv3(self.act(out))
        scale = self.alpha if self.skip_gain is None else (self.skip_gain *
                                                           self.alpha)
        if attn is not None:
            scale = attn(out) * scale
        elif self.training and self.drop_path.drop_rate > 0:
            scale = out.new_full((out.shape[0], 1, 1, 1), 1.) * scale
        if not torch.is_tensor(scale):
            return torch.add(shortcut, out, alpha=scale)
        return torch.addcmul(shortcut, out, self.drop_path(scale))


@MODELS.register_module()
class NFNet(BaseModule):
    """NFNet backbone (normalizer-free SE-ResNeXt-D): NFNet-F0 ... F7 and
    timm's NFNet-L / ECA-NFNet-L; the base of every NF family here.

    `High-Performance Large-Scale Image Recognition Without Normalization
    <https://arxiv.org/abs/2102.06171>`_. Output ``i`` (0-2) is the residual
    stream after stage ``i + 1``; output 3 is ``act(final_conv(stage4))``
    (times gamma in DeepMind's style). Strides 4, 8, 16, 32. Stages after
    the last output are not run.

    Args:
        arch (str | dict): A name of ``arch_settings`` (``'f0'`` ... ``'f7'``,
            ``'f4+'``: DeepMind's; ``'timm-f0'`` ... ``'timm-f7'``, ``'l0'``,
            ``'eca-l0'`` ... ``'eca-l3'``: timm's) or a dict of the keys that
            differ from ``base_arch``. Defaults to ``base_arch`` (``'f0'``).
        in_channels (int): Input channels. Defaults to 3.
        out_indices (int | Sequence[int]): Output indices; negatives count
            from the end. Defaults to ``(3, )``.
        frozen_stages (int): -1: none, 0: the stem, ``k``: the stem and ``k``
            stages (all: and ``final_conv``). Defaults to -1.
        drop_path_rate (float): Stochastic depth, block ``i`` of ``N`` gets
            ``rate * i / N``; rescaled only in timm's style. Defaults to 0.
        act_cfg (dict, optional): MMCV activation config (optional ``gamma``
            key). Defaults to the arch's (F: tanh GELU; timm's: SiLU).
        padding (str, optional): ``'same'`` (TF SAME, for DeepMind's
            weights) or ``'symmetric'``. Defaults to ``'same'`` in DeepMind's
            style, ``'symmetric'`` in timm's.
        ws_eps (float, optional): DeepMind's style: lower bound of
            ``var * fan_in`` (1e-4); timm's: added to the variance (1e-5).
        ws_style (str, optional): The weight standardisation's epsilon, as
            ``'deepmind'`` or ``'timm'`` (timm's ``dm_nfnet``). Defaults to
            the arch's style.
        with_cp (bool): Gradient checkpointing per block. Defaults to False.
        init_cfg (dict | list[dict], optional): Initialization config.
            Defaults to None.
    """

    base_arch = 'f0'
    arch_settings: Dict[str, dict] = {
        **{
            f'f{n}': dict(_F0, depths=[d * (n + 1) for d in _F0['depths']])
            for n in range(8)
        },
        'f4+':
        dict(_F0, depths=[5, 10, 30, 15], widths=[384, 768, 2048, 2048]),
        **{
            f'timm-f{n}':
            dict(
                _F0,
                style='timm',
                act=dict(type='GELU'),
                depths=[d * (n + 1) for d in _F0['depths']])
            for n in range(8)
        },
        'l0': _L,
        **{
            f'eca-l{n}':
            dict(
                _L,
                attention='eca',
                final_expansion=1.5 if n == 0 else 2,
                depths=[d * (n + 1) for d in _F0['depths']])
            for n in range(4)
        },
    }

    def __init__(self,
                 arch: Union[str, dict, None] = None,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (3, ),
                 frozen_stages: int = -1,
                 drop_path_rate: float = 0.,
                 act_cfg: Optional[dict] = None,
                 padding: Optional[str] = None,
                 ws_eps: Optional[float] = None,
                 ws_style: Optional[str] = None,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch = arch = self.parse_arch(arch or self.base_arch)
        num_stages = len(arch['depths'])
        timm = arch['style'] == 'timm'
        padding = padding or ('symmetric' if timm else 'same')
        if padding not in PADDING_MODES:
            raise ValueError(
                f'Invalid padding {padding!r}; valid: {PADDING_MODES}.')
        if not 0. <= drop_path_rate < 1.:
            raise ValueError(
                f'drop_path_rate must be in [0, 1), got {drop_path_rate}.')
        ws_style = ws_style or arch['style']
        if ws_style not in ('deepmind', 'timm'):
            raise ValueError(f"ws_style must be 'deepmind' or 'timm', got "
                             f'{ws_style!r}.')
        if ws_eps is None:
            ws_eps = 1e-5 if ws_style == 'timm' else 1e-4
        self.num_stages = num_stages
        self.out_indices = self._parse_out_indices(out_indices, num_stages)
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages must be in [-1, {num_stages}], '
                             f'got {frozen_stages}.')
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp
        self.deploy = False
        act_cfg = act_cfg or arch['act']
        self.gamma = get_activation_gamma(act_cfg)
        self.act = build_plain_act(act_cfg)  # parameter-free, shared
        # a negative eps is timm's epsilon in the variance (ScaledWSConv2d)
        conv_cfg = dict(
            padding=padding, eps=-ws_eps if ws_style == 'timm' else ws_eps)
        alpha = arch['alpha']
        # timm folds gamma into every conv, also those of an unactivated input
        self.out_scale = 1. if timm else self.gamma

        stem = OrderedDict()
        for i, (width, stride) in enumerate(
                zip(arch['stem_widths'], arch['stem_strides'])):
            if i > 0:
                stem[f'act{i}'] = self.act
            stem[f'conv{i + 1}'] = ScaledWSConv2d(
                in_channels,
                width,
                arch['stem_kernel'],
                stride=stride,
                input_scale=self.gamma if i > 0 or timm else 1.,
                **conv_cfg)
            in_channels = width
        if arch['stem_pool']:
            stem['pool'] = nn.MaxPool2d(3, stride=2, padding=1)
        self.stem = nn.Sequential(stem)

        num_blocks = sum(arch['depths'])
        block_idx = 0
        expected_std = 1.
        self.stages = nn.ModuleList()
        for depth, width, stride in zip(arch['depths'], arch['widths'],
                                        arch['strides']):
            blocks = []
            for b in range(depth):
                first = block_idx == 0 and arch['bottleneck_of_input']
                blocks.append(
                    NFBlock(
                        in_channels,
                        width,
                        stride=stride if b == 0 else 1,
                        alpha=alpha,
                        beta=1. / expected_std,
                        group_width=arch['group_width'],
                        bottleneck_ratio=1.
                        if first else arch['bottleneck_ratio'],
                        se_ratio=arch['se_ratio'],
                        act=self.act,
                        gamma=self.gamma,
                        conv_cfg=conv_cfg,
                        drop_path_rate=drop_path_rate * block_idx / num_blocks,
                        transition=b == 0,
                        **{
                            k: arch[k]
                            for k in ('attention', 'extra_conv',
                                      'attn_in_bottleneck',
                                      'bottleneck_of_input', 'style')
                        }))
                if b == 0:
                    expected_std = 1.
                expected_std = (expected_std**2 + alpha**2)**0.5
                block_idx += 1
                in_channels = width
            self.stages.append(nn.Sequential(*blocks))
        width = arch['final_width']
        if width is None:
            width = int(arch['final_expansion'] * in_channels)
        self.final_conv = ScaledWSConv2d(
            in_channels,
            width,
            1,
            input_scale=self.gamma if timm else 1.,
            **conv_cfg) if width else None
        self.num_features = width or in_channels
        self.out_channels = list(arch['widths'][:-1]) + [self.num_features]
        self._freeze_stages()

    @classmethod
    def parse_arch(cls, arch: Union[str, dict]) -> dict:
        """The full arch dict of a variant name or of a partial dict."""
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_settings:
                raise ValueError(
                    f'Unknown {cls.__name__} arch {arch!r}; valid names: '
                    f'{sorted(cls.arch_settings)} (or a dict).')
            return copy.deepcopy(cls.arch_settings[arch.lower()])
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch)}')
        unknown = sorted(set(arch) - set(_F0))
        if unknown:
            raise ValueError(f'Unknown arch keys {unknown}; valid: '
                             f'{list(_F0)}.')
        arch = copy.deepcopy({**cls.arch_settings[cls.base_arch], **arch})
        for a, b in (('depths', 'widths'), ('depths', 'strides'),
                     ('stem_widths', 'stem_strides')):
            if len(arch[a]) != len(arch[b]):
                raise ValueError(f'arch {a!r} and {b!r} differ in length: '
                                 f'{arch[a]} vs {arch[b]}.')
        if min(arch['depths']) < 1 or arch['final_expansion'] < 0:
            raise ValueError(
                'arch depths must be >= 1 and final_expansion >= 0, got '
                f"{arch['depths']} and {arch['final_expansion']}.")
        if arch['style'] not in ('deepmind', 'timm'):
            raise ValueError(f"arch style must be 'deepmind' or 'timm', got "
                             f"{arch['style']!r}.")
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
        if self.frozen_stages == self.num_stages and self.final_conv:
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
                if self.final_conv is not None:
                    x = self.final_conv(x)
                x = self.act(x)
                if self.out_scale != 1.:
                    x = x * self.out_scale
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def switch_to_deploy(self) -> None:
        """Fold the weight standardisation into plain conv weights."""
        for module in self.modules():
            if isinstance(module, ScaledWSConv2d):
                module.switch_to_deploy()
        self.deploy = True


def _regnet(depths: List[int], widths: List[int]) -> dict:
    """timm's NF-RegNet: DeepMind's widths x 0.75, rounded to 8."""
    return dict(
        _F0,
        **_TIMM,
        depths=depths,
        widths=[make_divisible(w * 0.75) for w in widths],
        stem_widths=[make_divisible(widths[0] * 0.75)],
        stem_strides=[2],
        strides=[2, 2, 2, 2],
        group_width=8,
        bottleneck_ratio=2.25,
        bottleneck_of_input=True,
        attn_in_bottleneck=True,
        extra_conv=False,
        final_width=make_divisible(0.75 * (1280 * widths[-1] // 440)))


@MODELS.register_module()
class NFRegNet(NFNet):
    """NF-RegNet-B0 ... B5 in timm's layout (``nf_regnet_b*``).

    One 3x3/2 stem conv, blocks 1x1 (2.25 x the input width; 1.0 in the
    first block), grouped 3x3 (group width 8), SE (0.5) and 1x1, a final
    conv of 1280/440 x the last width, SiLU. See :class:`NFNet` for the
    arguments; ``arch`` is ``'b0'`` ... ``'b5'`` or a dict over ``'b0'``.
    """

    base_arch = 'b0'
    arch_settings = {
        'b0': _regnet([1, 3, 6, 6], [48, 104, 208, 440]),
        'b1': _regnet([2, 4, 7, 7], [48, 104, 208, 440]),
        'b2': _regnet([2, 4, 8, 8], [56, 112, 232, 488]),
        'b3': _regnet([2, 5, 9, 9], [56, 128, 248, 528]),
        'b4': _regnet([2, 6, 11, 11], [64, 144, 288, 616]),
        'b5': _regnet([3, 7, 14, 14], [80, 168, 336, 704]),
    }


@MODELS.register_module()
class NFResNet(NFNet):
    """NF-ResNet-26/50/101 in timm's layout (``nf_resnet*``, with SE:
    ``nf_seresnet*``, with ECA: ``nf_ecaresnet*``).

    7x7/2 stem conv and 3x3/2 max pool, bottleneck blocks 1x1-3x3-1x1 (0.25
    x the output width, no groups), ReLU, no final conv: output 3 is
    ``act(stage4)``. See :class:`NFNet` for the other arguments.

    Args:
        depth (int): 26, 50 or 101. Defaults to 50.
        attention (str, optional): None, ``'se'`` (SE 1/16 after the last
            conv) or ``'eca'``. Defaults to None.
        arch (str | dict, optional): Instead of ``depth`` and ``attention``:
            a name of ``arch_settings`` or a dict over ``'resnet50'``.
    """

    base_arch = 'resnet50'
    arch_settings = {
        f'resnet{depth}':
        dict(
            _F0,
            style='timm',
            act=dict(type='ReLU'),
            depths=depths,
            widths=[256, 512, 1024, 2048],
            stem_widths=[64],
            stem_strides=[2],
            stem_kernel=7,
            stem_pool=True,
            group_width=0,
            bottleneck_ratio=0.25,
            attention=None,
            se_ratio=1 / 16,
            extra_conv=False,
            final_width=0)
        for depth, depths in ((26, [2, 2, 2, 2]), (50, [3, 4, 6, 3]),
                              (101, [3, 4, 23, 3]))
    }

    def __init__(self,
                 depth: int = 50,
                 attention: Optional[str] = None,
                 arch: Union[str, dict, None] = None,
                 **kwargs) -> None:
        if arch is not None and (depth, attention) != (50, None):
            raise ValueError('NFResNet takes depth and attention, or arch; '
                             f'got depth={depth!r}, attention={attention!r} '
                             'and an arch.')
        if arch is None:
            if f'resnet{depth}' not in self.arch_settings:
                raise ValueError(f'NFResNet depth must be 26, 50 or 101, got '
                                 f'{depth!r}.')
            arch = dict(
                self.arch_settings[f'resnet{depth}'], attention=attention)
        super().__init__(arch=arch, **kwargs)

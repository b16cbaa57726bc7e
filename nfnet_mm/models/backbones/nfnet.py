"""The NFNet backbone.

`High-Performance Large-Scale Image Recognition Without Normalization
<https://arxiv.org/abs/2102.06171>`_ (Brock, De, Smith, Simonyan, ICML 2021).
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..layers.activation import GammaAct, get_activation_gamma
from ..layers.ws_conv import ScaledWSConv2d

__all__ = ['NFNet', 'NFBlock', 'NFStem', 'SqueezeExcite', 'NFShortcut',
           'StochasticDepth', 'NFNET_DROPOUT_RATES']

_F_WIDTHS = [256, 512, 1536, 1536]
_F_COMMON = dict(
    group_width=128,
    bottleneck_ratio=0.5,
    se_ratio=0.5,
    alpha=0.2,
    stem_widths=[16, 32, 64, 128],
    stem_strides=[2, 1, 1, 2],
    strides=[1, 2, 2, 2],
    final_expansion=2)


def _f_arch(n: int, widths: Sequence[int] = _F_WIDTHS) -> dict:
    return dict(depths=[1 * n, 2 * n, 6 * n, 3 * n], widths=list(widths),
                **copy.deepcopy(_F_COMMON))


# Dropout rate of the classifier per variant (the paper's values; F7 as in
# the reference code), for configs.
NFNET_DROPOUT_RATES: Dict[str, float] = {
    'f0': 0.2, 'f1': 0.3, 'f2': 0.4, 'f3': 0.4, 'f4': 0.5, 'f5': 0.5,
    'f6': 0.5, 'f7': 0.5, 'f4+': 0.5,
}


class StochasticDepth(nn.Module):
    """DeepMind's stochastic depth: drop a sample's residual, no rescale.

    In training, each sample's residual branch is kept with probability
    ``1 - drop_rate`` and zeroed otherwise. Unlike timm's ``DropPath`` the
    kept residual is **not** divided by the keep probability (DeepMind's
    ``StochDepth(scale_by_keep_rate=False)``), so in training the expected
    residual is ``(1 - drop_rate)`` times the evaluation one.

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
        keep = torch.empty((x.shape[0], ) + (1, ) * (x.ndim - 1),
                           dtype=x.dtype, device=x.device)
        keep.bernoulli_(1. - self.drop_rate)
        return x * keep

    def extra_repr(self) -> str:
        return f'drop_rate={self.drop_rate}'


class SqueezeExcite(nn.Module):
    """Squeeze-Excite with the NF gate ``2 * sigmoid`` (plain linear FCs).

    ``out = x * 2 * sigmoid(fc2(relu(fc1(mean_hw(x)))))``; the factor 2
    keeps the signal variance (the sigmoid gate is 0.5 on average at init).

    Args:
        channels (int): Input/output channels.
        hidden_channels (int): Hidden width.
    """

    def __init__(self, channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden_channels)
        self.fc2 = nn.Linear(hidden_channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3))
        s = self.fc2(torch.relu(self.fc1(s)))
        return x * (2. * torch.sigmoid(s))[:, :, None, None]


class NFShortcut(nn.Module):
    """Transition shortcut: 2x2 avg-pool (stride 2, if strided) + 1x1 conv.

    The pool is ``ceil_mode=True, count_include_pad=False``, i.e. the same as
    a 2x2/2 "SAME" average pool that averages only real pixels.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 padding: str, eps: float) -> None:
        super().__init__()
        if stride > 1:
            self.pool = nn.AvgPool2d(
                stride, stride, ceil_mode=True, count_include_pad=False)
        else:
            self.pool = nn.Identity()
        self.conv = ScaledWSConv2d(
            in_channels, out_channels, 1, padding=padding, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


class NFBlock(nn.Module):
    """Normalizer-free pre-activation bottleneck block (NFNet-F).

    ``out = x + alpha * skip_gain * f(act(x) * beta)`` with ``f`` = 1x1 conv,
    act, 3x3 grouped conv (strided in a transition block), act, 3x3 grouped
    conv, act, 1x1 conv, Squeeze-Excite (x2 gate); every ``act`` is
    ``gamma * activation``. In a transition block the shortcut takes the
    scaled activated input ``act(x) * beta``.

    Every conv is a plain :class:`ScaledWSConv2d` (DeepMind's WSConv2D);
    :meth:`switch_to_deploy` folds the constant factors in front of each conv
    (``gamma``, and ``gamma * beta`` for ``conv1`` and the shortcut conv)
    into the conv weights (exact: a conv is linear in its input).

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
        padding (str): Padding mode of the convs.
        eps (float): Weight standardisation epsilon.
        drop_path_rate (float): Stochastic depth rate. Defaults to 0.
        transition (bool): Whether it is the first block of a stage (a
            shortcut conv is built if the shape changes). Defaults to False.
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
                 padding: str,
                 eps: float,
                 drop_path_rate: float = 0.,
                 transition: bool = False) -> None:
        super().__init__()
        # as the reference code: the bottleneck width is rounded down to a
        # multiple of the group width (F4+ stage 1: 384 x 0.5 = 192 -> 128)
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
        conv = dict(padding=padding, eps=eps)
        self.conv1 = ScaledWSConv2d(in_channels, mid, 1, **conv)
        self.conv2 = ScaledWSConv2d(
            mid, mid, 3, stride=stride, groups=groups, **conv)
        self.conv2b = ScaledWSConv2d(mid, mid, 3, groups=groups, **conv)
        self.conv3 = ScaledWSConv2d(mid, out_channels, 1, **conv)
        self.se = SqueezeExcite(out_channels,
                                max(1, int(out_channels * se_ratio)))
        self.drop_path = StochasticDepth(drop_path_rate)
        self.skip_gain = nn.Parameter(torch.zeros(()))
        if transition and (stride > 1 or in_channels != out_channels):
            self.shortcut = NFShortcut(in_channels, out_channels, stride,
                                       padding, eps)
        elif stride > 1 or in_channels != out_channels:
            raise ValueError('Only a transition block may change the shape.')
        else:
            self.shortcut = None
        self.gamma = gamma
        # the factors applied after the activation: gamma * beta on the block
        # input (it feeds conv1 and the shortcut), gamma inside; both become
        # 1 when switch_to_deploy() folds them into the following convs
        self.in_gain = gamma * beta
        self.act_gain = gamma

    @staticmethod
    def _scaled(out: torch.Tensor, gain: float) -> torch.Tensor:
        return out * gain if gain != 1. else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._scaled(self.act(x), self.in_gain)  # act(x) * beta
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self._scaled(self.act(out), self.act_gain))
        out = self.conv2b(self._scaled(self.act(out), self.act_gain))
        out = self.conv3(self._scaled(self.act(out), self.act_gain))
        out = self.se(out)
        out = self.drop_path(out)
        return out * (self.skip_gain * self.alpha) + shortcut

    def switch_to_deploy(self) -> None:
        """Fold WS and the gains gamma and beta into the conv weights."""
        if self.in_gain == 1. and self.act_gain == 1. and self.conv1.deploy:
            return
        # avg-pool is linear: the shortcut's input factor commutes with it
        self.conv1.input_scale = self.in_gain
        if self.shortcut is not None:
            self.shortcut.conv.input_scale = self.in_gain
        for conv in (self.conv2, self.conv2b, self.conv3):
            conv.input_scale = self.act_gain
        for module in self.modules():
            if isinstance(module, ScaledWSConv2d):
                module.switch_to_deploy()
        self.in_gain = self.act_gain = 1.


class NFStem(nn.Module):
    """Four 3x3 WS convs with activations in between (none after the last).

    Each activation is multiplied by its gain gamma (``act_gain``; folded
    into the following conv by :meth:`switch_to_deploy`).

    Args:
        in_channels (int): Input channels.
        widths (Sequence[int]): Output channels of the convs.
        strides (Sequence[int]): Strides of the convs.
        act (nn.Module): The plain activation.
        gamma (float): The activation's gain.
        padding (str): Padding mode.
        eps (float): Weight standardisation epsilon.
    """

    def __init__(self, in_channels: int, widths: Sequence[int],
                 strides: Sequence[int], act: nn.Module, gamma: float,
                 padding: str, eps: float) -> None:
        super().__init__()
        self.act = act
        self.num_convs = len(widths)
        for i, (width, stride) in enumerate(zip(widths, strides)):
            conv = ScaledWSConv2d(
                in_channels, width, 3, stride=stride, padding=padding,
                eps=eps)
            self.add_module(f'conv{i + 1}', conv)
            in_channels = width
        self.act_gain = gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.num_convs + 1):
            if i > 1:
                x = self.act(x)
                if self.act_gain != 1.:
                    x = x * self.act_gain
            x = getattr(self, f'conv{i}')(x)
        return x

    def switch_to_deploy(self) -> None:
        """Fold WS (and the gain of the preceding activation)."""
        for i in range(1, self.num_convs + 1):
            conv = getattr(self, f'conv{i}')
            if i > 1 and not conv.deploy:
                conv.input_scale = self.act_gain
            conv.switch_to_deploy()
        self.act_gain = 1.


@MODELS.register_module()
class NFNet(BaseModule):
    """NFNet backbone (normalizer-free SE-ResNeXt-D, NFNet-F0 ... F7).

    A PyTorch/MMPretrain implementation of `High-Performance Large-Scale
    Image Recognition Without Normalization
    <https://arxiv.org/abs/2102.06171>`_. Every conv is a
    :class:`ScaledWSConv2d`; each activation is multiplied by its gain gamma
    (folded into the following conv by :meth:`switch_to_deploy`).

    Output index ``i`` (0-2) is the residual stream after stage ``i + 1``;
    index 3 is ``act(final_conv(stage4))`` with ``final_expansion`` x the last
    width channels. Strides are 4, 8, 16, 32. Stages after the last requested
    index are not run, and ``final_conv`` runs only if index 3 is requested.

    Args:
        arch (str | dict): ``'f0'`` ... ``'f7'``, ``'f4+'`` or a dict with
            keys ``depths``, ``widths``, ``group_width``,
            ``bottleneck_ratio``, ``se_ratio``, ``alpha``, ``stem_widths``,
            ``stem_strides``, ``strides``, ``final_expansion``.
            Defaults to ``'f0'``.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (int | Sequence[int]): Output indices; negatives count
            from the end. Defaults to ``(3, )``.
        frozen_stages (int): -1 freezes nothing, 0 the stem, ``k`` the stem
            and the first ``k`` stages (and ``final_conv`` if ``k`` is the
            number of stages). Defaults to -1.
        drop_path_rate (float): Stochastic depth; block ``i`` of ``N`` gets
            ``drop_path_rate * i / N``, kept residuals are not rescaled
            (DeepMind). Defaults to 0.
        act_cfg (dict): MMCV activation config; its gain gamma is looked up
            by type (or given as a ``gamma`` key). Defaults to
            ``dict(type='GELU', approximate='tanh')`` (``jax.nn.gelu``).
        padding (str): ``'same'`` (TensorFlow SAME, needed for DeepMind/timm
            weights) or ``'symmetric'``. Defaults to ``'same'``.
        ws_eps (float): Lower bound of ``var * fan_in`` in the weight
            standardisation. Defaults to 1e-4.
        with_cp (bool): Use gradient checkpointing per block.
            Defaults to False.
        init_cfg (dict | list[dict], optional): Initialization config.
            Defaults to None.
    """

    arch_settings: Dict[str, dict] = {
        **{f'f{n - 1}': _f_arch(n)
           for n in range(1, 9)},
        'f4+': _f_arch(5, widths=[384, 768, 2048, 2048]),
    }
    arch_keys = ('depths', 'widths', 'group_width', 'bottleneck_ratio',
                 'se_ratio', 'alpha', 'stem_widths', 'stem_strides',
                 'strides', 'final_expansion')

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
        self.arch = self._parse_arch(arch)
        arch = self.arch
        num_stages = len(arch['depths'])
        for key in ('widths', 'strides'):
            if len(arch[key]) != num_stages:
                raise ValueError(
                    f'arch[{key!r}] has {len(arch[key])} entries but '
                    f'depths has {num_stages}.')
        if len(arch['stem_widths']) != len(arch['stem_strides']):
            raise ValueError('arch stem_widths and stem_strides differ in '
                             'length.')
        if padding not in ('same', 'symmetric'):
            raise ValueError(f"Invalid padding {padding!r}; valid: 'same', "
                             "'symmetric'.")
        self.num_stages = num_stages
        self.out_indices = self._parse_out_indices(out_indices, num_stages)
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages must be in [-1, {num_stages}], '
                             f'got {frozen_stages}.')
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp
        self.padding = padding
        self.deploy = False
        self.act_cfg = copy.deepcopy(act_cfg)
        self.gamma = get_activation_gamma(act_cfg)
        alpha = arch['alpha']

        # The plain activation is shared (parameter-free); the stem and the
        # blocks multiply by gamma themselves (act_gain / in_gain) so that
        # switch_to_deploy() can fold it into the following convs. The final
        # activation feeds no conv and keeps its gain.
        act = GammaAct(act_cfg, gamma=1.)
        self.stem = NFStem(in_channels, arch['stem_widths'],
                           arch['stem_strides'], act, self.gamma, padding,
                           ws_eps)
        num_blocks = sum(arch['depths'])
        block_idx = 0
        expected_std = 1.
        in_ch = arch['stem_widths'][-1]
        self.stages = nn.ModuleList()
        for s, (depth, width, stride) in enumerate(
                zip(arch['depths'], arch['widths'], arch['strides'])):
            blocks = []
            for b in range(depth):
                blocks.append(
                    NFBlock(
                        in_ch,
                        width,
                        stride=stride if b == 0 else 1,
                        alpha=alpha,
                        beta=1. / expected_std,
                        group_width=arch['group_width'],
                        bottleneck_ratio=arch['bottleneck_ratio'],
                        se_ratio=arch['se_ratio'],
                        act=act,
                        gamma=self.gamma,
                        padding=padding,
                        eps=ws_eps,
                        drop_path_rate=drop_path_rate * block_idx /
                        num_blocks,
                        transition=b == 0))
                # the transition block resets the variance, then it grows
                if b == 0:
                    expected_std = 1.
                expected_std = (expected_std**2 + alpha**2)**0.5
                block_idx += 1
                in_ch = width
            self.stages.append(nn.Sequential(*blocks))
        self.num_features = int(arch['final_expansion'] * in_ch)
        self.final_conv = ScaledWSConv2d(
            in_ch, self.num_features, 1, padding=padding, eps=ws_eps)
        self.final_act = GammaAct(act_cfg, gamma=self.gamma)
        self.out_channels = list(arch['widths'][:-1]) + [self.num_features]
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_settings:
                raise ValueError(
                    f'Unknown NFNet arch {arch!r}; valid names: '
                    f'{sorted(cls.arch_settings)} (or a dict).')
            return copy.deepcopy(cls.arch_settings[arch.lower()])
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch)}')
        missing = [k for k in cls.arch_keys if k not in arch]
        if missing:
            raise ValueError(f'The arch dict misses keys {missing}; it needs '
                             f'all of {list(cls.arch_keys)}.')
        return copy.deepcopy(dict(arch))

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
            if not isinstance(index, int) or not (-num_stages <= index <
                                                  num_stages):
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
                x = self.final_act(self.final_conv(x))
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def switch_to_deploy(self) -> None:
        """Fold the weight standardisation into plain conv weights.

        Every :class:`ScaledWSConv2d` keeps ``weight`` and ``bias`` only; its
        standardised weight is computed once, with the gain gamma of the
        preceding activation (and a block's beta) folded in, so inside the
        network only plain activations run (the final activation keeps its
        gain). Outputs are unchanged (up to float rounding).
        """
        if self.deploy:
            return
        self.stem.switch_to_deploy()
        for stage in self.stages:
            for block in stage:
                block.switch_to_deploy()
        self.final_conv.switch_to_deploy()
        self.deploy = True

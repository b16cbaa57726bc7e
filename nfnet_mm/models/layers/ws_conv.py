"""Scaled weight-standardised convolution (paper eq. 1), SAME padding."""
from typing import Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torch.nn.modules.utils import _pair

__all__ = ['ScaledWSConv2d', 'same_pads', 'standardize_weight']

PADDING_MODES = ('same', 'symmetric')


def same_pads(size: int,
              kernel_size: int,
              stride: int,
              dilation: int = 1) -> Tuple[int, int]:
    """Padding (before, after) of TensorFlow's "SAME" along one dimension.

    The odd element, if any, goes after.

    Args:
        size (int): Input size along the dimension.
        kernel_size (int): Kernel size.
        stride (int): Stride.
        dilation (int): Dilation. Defaults to 1.
    """
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + (kernel_size - 1) * dilation + 1 - size,
                0)
    return total // 2, total - total // 2


def _ws(weight, gain, eps, input_scale, in_place):
    """Eq. (1) per output row, with its row statistics (``eps < 0``: timm's
    ``-eps`` inside the variance)."""
    flat = weight.flatten(1)
    mean = flat.mean(1, keepdim=True)
    out = flat - mean
    sq = torch.linalg.vector_norm(out, dim=1).square()
    r = torch.rsqrt(
        torch.clamp(sq, min=eps) if eps >= 0 else sq - eps * flat.shape[1])
    k = gain * r * input_scale
    out = out.mul_(k[:, None]) if in_place else out * k[:, None]
    return out.view_as(weight), mean[:, 0], sq, r, k


class _ScaledWS(torch.autograd.Function):
    """Eq. (1) with an analytic backward that saves the weight, not ``c``."""

    @staticmethod
    def forward(ctx, weight, gain, eps, input_scale):
        out, mean, sq, r, k = _ws(weight, gain, eps, input_scale, True)
        kr2 = torch.where(sq >= eps, k * r * r, 0.)  # always if eps < 0
        ctx.save_for_backward(weight, mean, k, kr2, r * input_scale)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        weight, mean, k, kr2, rs = ctx.saved_tensors
        grad, w = grad_out.reshape(k.shape[0], -1), weight.flatten(1)
        grad_sum = grad.sum(1)
        d = torch.linalg.vecdot(grad, w) - mean * grad_sum
        coef = kr2 * d
        shift = torch.addcmul(coef * mean, k, grad_sum, value=-1 / w.shape[1])
        grad_w = torch.addcmul(shift[:, None], grad, k[:, None])
        grad_w.addcmul_(w, coef[:, None], value=-1.)
        return grad_w.view_as(grad_out), d * rs, None, None


def standardize_weight(weight: torch.Tensor,
                       gain: torch.Tensor,
                       eps: float = 1e-4,
                       input_scale: float = 1.0) -> torch.Tensor:
    """Scaled weight standardisation, paper eq. (1).

    ``gain * (W - mean) * rsqrt(max(var * fan_in, eps)) * input_scale`` over
    each output unit's fan-in (biased variance, DeepMind's guard); a negative
    ``eps`` gives timm's ``rsqrt((var - eps) * fan_in)``.

    Args:
        weight (Tensor): Conv weight ``[O, I/groups, kh, kw]``.
        gain (Tensor): Per-output-channel gain ``[O]``.
        eps (float): Lower bound of ``var * fan_in`` (negative: timm's
            epsilon in the variance, negated). Defaults to 1e-4.
        input_scale (float): Constant input gain. Defaults to 1.0.
    """
    tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
    if not tracing and torch.is_grad_enabled() and (weight.requires_grad
                                                    or gain.requires_grad):
        return _ScaledWS.apply(weight, gain, eps, input_scale)
    return _ws(weight, gain, eps, input_scale, not tracing)[0]


@MODELS.register_module()
class ScaledWSConv2d(nn.Conv2d):
    """Conv2d with Scaled Weight Standardization (paper eq. 1).

    Each output unit's weight is standardised over its fan-in, divided by
    ``sqrt(fan_in)`` and multiplied by a learnable gain. ``'same'`` padding
    is TensorFlow's "SAME" (as DeepMind's and timm's NFNets, whose weights
    need it); ``'symmetric'`` is ``(kernel_size - 1) * dilation // 2``.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int | tuple[int, int]): Kernel size.
        stride (int | tuple[int, int]): Stride. Defaults to 1.
        padding (str | int | tuple[int, int]): ``'same'``, ``'symmetric'``
            or explicit padding. Defaults to ``'same'``.
        dilation (int | tuple[int, int]): Dilation. Defaults to 1.
        groups (int): Groups. Defaults to 1.
        bias (bool): Learnable bias (init 0). Defaults to True.
        eps (float): Lower bound of ``var * fan_in``; negative: ``-eps`` is
            added to the variance (timm). Defaults to 1e-4.
        gain_init (float): Initial value of the gain. Defaults to 1.0.
        input_scale (float): Constant factor of the input (e.g. gamma), folded
            into the weight; not in the state dict. Defaults to 1.0.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: Union[int, Tuple[int, int]],
                 stride: Union[int, Tuple[int, int]] = 1,
                 padding: Union[str, int, Tuple[int, int]] = 'same',
                 dilation: Union[int, Tuple[int, int]] = 1,
                 groups: int = 1,
                 bias: bool = True,
                 eps: float = 1e-4,
                 gain_init: float = 1.0,
                 input_scale: float = 1.0,
                 **kwargs) -> None:
        kernel_size, stride, dilation = (_pair(kernel_size), _pair(stride),
                                         _pair(dilation))
        self._dynamic_same = False
        if isinstance(padding, str):
            if padding not in PADDING_MODES:
                raise ValueError(f'Invalid padding {padding!r}; valid: '
                                 f'{PADDING_MODES} or an int.')
            pad_mode = padding
            if padding == 'same':
                static = []
                for k, s, d in zip(kernel_size, stride, dilation):
                    before, after = same_pads(1, k, 1, d)  # size-free if s=1
                    if s == 1 and before == after:
                        static.append(before)
                    else:
                        self._dynamic_same = True
                        static.append(0)
                conv_padding = tuple(static)
            else:
                conv_padding = tuple(
                    (k - 1) * d // 2 for k, d in zip(kernel_size, dilation))
        else:
            pad_mode = 'explicit'
            conv_padding = _pair(padding)
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=conv_padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            **kwargs)
        self.pad_mode = pad_mode
        self.eps = eps
        self.input_scale = input_scale
        self.deploy = False
        self.gain = nn.Parameter(torch.full((out_channels, ), gain_init))

    def reset_parameters(self) -> None:
        """Weight ~ N(0, 1 / fan_in), bias 0."""
        nn.init.kaiming_normal_(
            self.weight, mode='fan_in', nonlinearity='linear')
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def get_weight(self) -> torch.Tensor:
        """The standardised, scaled weight used in the convolution."""
        if self.deploy:
            return self.weight
        return standardize_weight(self.weight, self.gain, self.eps,
                                  self.input_scale)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self._dynamic_same:
            sizes = x.shape[-2:]
            if torch.jit.is_tracing():  # constant pads: static shapes only
                sizes = [int(size) for size in sizes]
            pads = [
                same_pads(size, k, s, d) for size, k, s, d in zip(
                    sizes, self.kernel_size, self.stride, self.dilation)
            ]
            (top, bottom), (left, right) = pads
            if bottom != top or right != left:  # the asymmetric remainder
                x = F.pad(x, (0, right - left, 0, bottom - top))
            padding = (top, left)
        else:
            padding = self.padding
        return F.conv2d(x, weight, self.bias, self.stride, padding,
                        self.dilation, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x`` with the standardised weight."""
        return self._conv(x, self.get_weight())

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold the standardisation and ``input_scale`` into ``weight``."""
        if self.deploy:
            return
        # in float64: the folded weight is the correctly rounded one
        weight = standardize_weight(self.weight.double(), self.gain.double(),
                                    self.eps, self.input_scale)
        self.weight.data = weight.to(self.weight.dtype).contiguous()
        self.input_scale = 1.0
        del self.gain
        self.register_parameter('gain', None)
        self.deploy = True

    def extra_repr(self) -> str:
        s = super().extra_repr()
        s += f', pad_mode={self.pad_mode}, eps={self.eps}'
        if self.input_scale != 1.0:
            s += f', input_scale={self.input_scale:.6g}'
        return s + (', deploy=True' if self.deploy else '')

"""GPU memory a training config needs, per GPU: measured activations plus the
state the config implies.

Activations are the bytes autograd saves for backward, counted once per
storage (parameters excluded: they are state), in one forward at the config's
train resolution under its autocast dtype, at batch 1 and 2: the difference is
the per-image cost, the rest is fixed (e.g. autocast's low-precision weight
copies). With ``with_cp`` a block's activations are recomputed in backward, one
block at a time, so the largest block's per-image bytes are added back.
"""
import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn

GIB = 2**30

#: Kept free on every GPU: the CUDA context, cuDNN/cuBLAS workspaces and the
#: gradients of activations in flight (bytes), then a fraction of the rest
#: for the allocator's fragmentation.
RESERVED_BYTES = 2 * GIB
FRAGMENTATION = 0.10


class SavedTensorCounter:
    """Counts the unique storages autograd saves for backward.

    Args:
        model (nn.Module): Its parameters' storages are not counted.
    """

    def __init__(self, model: nn.Module) -> None:
        self.skip = {p.untyped_storage()._cdata for p in model.parameters()}
        self.storages: Dict[int, int] = {}

    @property
    def total(self) -> int:
        return sum(self.storages.values())

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage._cdata not in self.skip:
            self.storages[storage._cdata] = storage.nbytes()
        return tensor

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)


def _autocast(dtype: Optional[torch.dtype], device: str):
    return torch.autocast(device, dtype=dtype, enabled=dtype is not None)


def saved_bytes(model: nn.Module,
                batch: int,
                px: int,
                dtype: Optional[torch.dtype] = torch.bfloat16,
                blocks: Sequence[nn.Module] = ()):
    """Bytes saved for backward by one forward of ``batch`` images.

    Args:
        model (nn.Module): Called on a ``(batch, 3, px, px)`` tensor.
        batch (int): Images.
        px (int): Square input size.
        dtype (torch.dtype, optional): Autocast dtype; None: no autocast.
        blocks (Sequence[nn.Module]): Modules whose own saved bytes are
            measured too (their largest is returned).

    Returns:
        tuple[int, int]: The total and the largest of ``blocks`` (0 without).
    """
    device = next(model.parameters()).device.type
    counter = SavedTensorCounter(model)
    largest, start = [0], {}

    def before(module, args):
        start[module] = counter.total

    def after(module, args, out):
        largest[0] = max(largest[0], counter.total - start.pop(module))

    handles = []
    for block in blocks:
        handles += [
            block.register_forward_pre_hook(before),
            block.register_forward_hook(after)
        ]
    x = torch.randn(batch, 3, px, px, device=device)
    try:
        with counter.hooks(), _autocast(dtype, device):
            out = model(x)
        del out
    finally:
        for handle in handles:
            handle.remove()
    return counter.total, largest[0]


def activation_bytes(
    model: nn.Module,
    px: int,
    dtype: Optional[torch.dtype] = torch.bfloat16,
    blocks: Sequence[nn.Module] = ()
) -> Dict[str, int]:
    """Per-image and fixed activation bytes (from batch 1 and 2).

    Returns:
        dict: ``per_image``, ``fixed`` and ``largest_block`` (per image).
    """
    model.train()
    one, block_one = saved_bytes(model, 1, px, dtype, blocks)
    two, block_two = saved_bytes(model, 2, px, dtype, blocks)
    return dict(
        per_image=two - one,
        fixed=max(2 * one - two, 0),
        largest_block=block_two - block_one)


def state_bytes(num_params: int,
                sam: bool = False,
                ema: bool = True,
                momentum: bool = True,
                ddp_buckets: bool = True) -> Dict[str, int]:
    """The fp32 state each GPU keeps for a DDP replica (bytes).

    Args:
        num_params (int): Parameters of the model.
        sam (bool): SAM's copy of the weights while perturbed.
        ema (bool): The EMA's averaged copy.
        momentum (bool): SGD's momentum buffer.
        ddp_buckets (bool): DDP's gradient buckets, separate from ``.grad``
            unless ``gradient_as_bucket_view=True``.
    """
    each = 4 * num_params
    parts = dict(weights=each, gradients=each)
    for name, on in (('ddp_buckets', ddp_buckets), ('momentum', momentum),
                     ('ema', ema), ('sam_copy', sam)):
        parts[name] = each if on else 0
    return parts


def largest_batch(gpu_bytes: int, state: int, fixed: int,
                  per_image: int) -> int:
    """The largest per-GPU batch whose estimate fits ``gpu_bytes``."""
    usable = (gpu_bytes - RESERVED_BYTES) * (1 - FRAGMENTATION)
    return max(math.floor((usable - state - fixed) / per_image), 0)


def estimate(gpu_bytes: int, batch: int, state: int, fixed: int,
             per_image: int) -> Dict[str, float]:
    """The estimate for ``batch`` images per GPU, and whether it fits."""
    need = state + fixed + batch * per_image
    usable = (gpu_bytes - RESERVED_BYTES) * (1 - FRAGMENTATION)
    return dict(need_bytes=need, fits=need <= usable)


def measured_peak(model: nn.Module,
                  batch: int,
                  px: int,
                  dtype: Optional[torch.dtype] = torch.bfloat16) -> int:
    """Peak CUDA bytes of one SGD training step (model on a CUDA device)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, 3, px, px, device='cuda')
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    with _autocast(dtype, 'cuda'):
        out = model(x)
    sum(o.float().mean() for o in out).backward()
    optimizer.step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()

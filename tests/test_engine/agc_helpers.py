"""Shared pieces of the AGC tests: a tiny net, a plain eq.-3 reference, a DDP
worker.

Kept in a module (not the test file) so that ``torch.multiprocessing.spawn``
can import the worker in the child processes.
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    'TinyNet', 'make_batches', 'reference_agc', 'train_steps', 'ddp_worker'
]


class TinyNet(nn.Module):
    """Conv, grouped conv, a per-channel gain (1-d), a skip gain (0-d), a
    head."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gconv = nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False)
        self.gain = nn.Parameter(torch.ones(8))
        self.skip_gain = nn.Parameter(torch.tensor(0.5))
        self.head = nn.Module()
        self.head.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x))
        h = h + self.skip_gain * self.gconv(h) * self.gain.view(1, -1, 1, 1)
        return self.head.fc(h.mean((2, 3)))


def make_batches(steps: int, batch: int, seed: int = 1):
    """Fixed (inputs, labels) batches; large inputs make AGC clip."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, 6, 6, generator=gen) * 3,
             torch.randint(0, 5, (batch, ), generator=gen))
            for _ in range(steps)]


def reference_agc(weights, grads, clipping: float, eps: float):
    """Eq. 3 written plainly, unit by unit, in float64.

    Returns the clipped gradients (float64), the fraction of clipped units and
    the largest ratio.
    """
    out, n_units, n_clipped, max_ratio = [], 0, 0, 0.
    for w, g in zip(weights, grads):
        w = w.detach().double()
        g = g.detach().double().clone(memory_format=torch.contiguous_format)
        if w.ndim <= 1:  # scalars and vectors: one unit, the whole tensor
            units = [(w.reshape(-1), g.view(-1))]
        else:  # one unit per output row (dim 0)
            units = [(w[i].reshape(-1), g[i].view(-1))
                     for i in range(w.shape[0])]
        for w_i, g_i in units:
            w_norm = torch.sqrt(torch.sum(w_i * w_i)).item()
            g_norm = torch.sqrt(torch.sum(g_i * g_i)).item()
            ratio = g_norm / max(w_norm, eps)
            n_units += 1
            max_ratio = max(max_ratio, ratio)
            if ratio > clipping:
                n_clipped += 1
                g_i.mul_(clipping * max(w_norm, eps) / g_norm)
        out.append(g)
    return out, n_clipped / n_units, max_ratio


def train_steps(wrapper, model, batches, wrapped=None):
    """Run ``update_params`` over ``batches``; returns the clip fractions
    seen."""
    from mmengine.logging import MessageHub
    wrapped = model if wrapped is None else wrapped
    fracs = []
    for x, y in batches:
        with wrapper.optim_context(wrapped):
            loss = F.cross_entropy(wrapped(x), y)
        wrapper.update_params(loss)
        buf = MessageHub.get_current_instance().log_scalars.get(
            'train/agc_clip_frac')
        fracs.append(float(buf.current()) if buf is not None else None)
    return fracs


def ddp_worker(rank: int, world: int, port: int, out_dir: str, steps: int,
               batch: int, agc: dict) -> None:
    """One gloo rank: DDP over TinyNet, AGC wrapper, its shard of each
    batch."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from nfnet_mm.engine.optimizers import AGCOptimWrapper

    torch.set_num_threads(1)
    os.environ['MASTER_ADDR'] = '127.0.0.1'
    os.environ['MASTER_PORT'] = str(port)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = TinyNet()
        ddp = DistributedDataParallel(model)
        wrapper = AGCOptimWrapper(
            torch.optim.SGD(ddp.parameters(), lr=0.5, momentum=0.9), agc=agc)
        shard = batch // world
        batches = [(x[rank * shard:(rank + 1) * shard],
                    y[rank * shard:(rank + 1) * shard])
                   for x, y in make_batches(steps, batch)]
        fracs = train_steps(wrapper, model, batches, wrapped=ddp)
        torch.save(
            dict(
                params={
                    n: p.detach().clone()
                    for n, p in model.named_parameters()
                },
                fracs=fracs), os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()

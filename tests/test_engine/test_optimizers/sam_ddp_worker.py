"""The 2-process gloo DDP SAM test's script (run by test_sam.py).

``python sam_ddp_worker.py [--bucket-view]`` spawns two ranks that run
:func:`run_worker` (with ``--bucket-view``: DDP's ``gradient_as_bucket_view``,
as the shipped SAM configs set it) and prints ``ranks passed: 2`` when both
passed; a failed check in a rank fails the script. :mod:`helpers` must be
importable (test_sam.py puts tests/ in ``PYTHONPATH``); ``test_sam`` is found
beside this script.
"""
import os
import sys

import torch
import torch.distributed as dist
from helpers import build_sam_model, free_port, sam_batch
from mmengine.optim import OptimWrapper
from mmpretrain.registry import MODEL_WRAPPERS
from test_sam import LR, reference_sam_grad

from nfnet_mm.engine.model_wrappers import SAMDistributedDataParallel
from nfnet_mm.engine.optimizers import SAMOptimWrapper

WORLD_SIZE = 2
BATCH = 6
ASCENT = 3  # ceil(0.5 * 6)


def _flat(tensors):
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def _gather(tensor, world_size):
    out = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(out, tensor.contiguous())
    return out


def run_worker(rank: int, world_size: int, port: int,
               bucket_view: bool) -> None:
    torch.set_num_threads(1)
    os.environ['MASTER_ADDR'] = '127.0.0.1'
    os.environ['MASTER_PORT'] = str(port)
    dist.init_process_group('gloo', rank=rank, world_size=world_size)
    try:
        # Different seeds per rank: DDP must broadcast rank 0's initial
        # weights.
        model = build_sam_model(seed=rank)
        # as the Runner builds it from model_wrapper_cfg
        ddp = MODEL_WRAPPERS.build(
            dict(
                type='SAMDistributedDataParallel',
                module=model,
                gradient_as_bucket_view=bucket_view))
        assert isinstance(ddp, SAMDistributedDataParallel)
        wrapper = SAMOptimWrapper(
            optimizer=torch.optim.SGD(ddp.parameters(), lr=LR),
            rho=0.05,
            ascent_fraction=0.5)
        names = [n for n, _ in model.named_parameters()]

        seen_weights = []  # weights at every backbone forward
        model.backbone.register_forward_pre_hook(
            lambda m, args: seen_weights.append(_flat(model.parameters())))
        step_grads = []  # gradients the optimizer steps with
        wrapper.optimizer.register_step_pre_hook(
            lambda opt, args, kwargs: step_grads.append(
                _flat(p.grad for p in model.parameters())))

        for step in range(3):
            seed = 100 * step + rank  # the ranks' data differ
            w = {n: p.detach().clone() for n, p in model.named_parameters()}
            data = model.data_preprocessor(sam_batch(BATCH, seed), True)
            local, _, _ = reference_sam_grad(
                model, data['inputs'], data['data_samples'], ASCENT, w=w)
            local = _flat(local[n] for n in names)
            expected = local.clone()
            dist.all_reduce(expected)
            expected /= world_size

            seen_weights.clear()
            log_vars = ddp.train_step(sam_batch(BATCH, seed), wrapper)
            assert len(seen_weights) == 2, len(seen_weights)
            w_flat = _flat(w[n] for n in names)
            # ascent at w, descent at the local perturbed point
            torch.testing.assert_close(seen_weights[0], w_flat, rtol=0, atol=0)
            perturbation = seen_weights[1] - w_flat
            assert abs(perturbation.norm().item() - 0.05) < 1e-5
            perturbations = _gather(perturbation, world_size)
            assert (perturbations[0] - perturbations[1]).abs().max() > 1e-4, \
                'ascent was synced: both ranks perturbed the same way'
            # descent gradient: the all-rank average of the local ones
            torch.testing.assert_close(
                step_grads[-1], expected, rtol=1e-5, atol=1e-6)
            # the local ascent gradient norm is logged, not an averaged one
            norms = _gather(log_vars['sam_ascent_grad_norm'].reshape(1),
                            world_size)
            assert not torch.equal(norms[0], norms[1])
            assert not wrapper.is_perturbed

        params = _gather(_flat(model.parameters()), world_size)
        torch.testing.assert_close(params[0], params[1], rtol=0, atol=0)
        assert len(step_grads) == 3

        # A non-SAM optimizer wrapper: the normal one-pass DDP step.
        seen_weights.clear()
        plain = OptimWrapper(torch.optim.SGD(ddp.parameters(), lr=LR))
        log_vars = ddp.train_step(sam_batch(BATCH, 1000 + rank), plain)
        assert len(
            seen_weights) == 1 and 'sam_ascent_grad_norm' not in log_vars
        params = _gather(_flat(model.parameters()), world_size)
        torch.testing.assert_close(params[0], params[1], rtol=0, atol=0)
    finally:
        dist.destroy_process_group()


if __name__ == '__main__':
    import torch.multiprocessing as mp
    mp.spawn(
        run_worker,
        args=(WORLD_SIZE, free_port(), '--bucket-view' in sys.argv),
        nprocs=WORLD_SIZE,
        join=True)
    print(f'ranks passed: {WORLD_SIZE}')

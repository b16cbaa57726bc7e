"""Sharded training is refused by AGC, SAM and the EMA, before any step.

Two gloo ranks wrap a tiny classifier with torch's FSDP1 (flat parameters and
``use_orig_params`` views, as MMEngine's ``FSDPStrategy`` does) and FSDP2
(``fully_shard``), and build MMEngine's ``ZeroRedundancyOptimizer``.
"""
import os

import pytest
import torch
import torch.distributed as dist
from helpers import build_sam_model, free_port, sam_batch

from nfnet_mm.engine.optimizers import AGCOptimWrapper, SAMOptimWrapper
from nfnet_mm.models.utils import NFNetEMA, sam_train_step
from nfnet_mm.utils.sharding import (ShardedTrainingError, refuse_sharded,
                                     sharded_kind)


def _local(model):
    return [(p.to_local() if hasattr(p, 'to_local') else p).detach().clone()
            for p in model.parameters()]


def _shard(model, how):
    """``model`` sharded ``how``: (the module to train, its inner model)."""
    if how == 'fsdp2':
        from torch.distributed.fsdp import fully_shard
        return fully_shard(model), model
    from mmengine.model import MMFullyShardedDataParallel
    fsdp = MMFullyShardedDataParallel(
        model,
        use_orig_params=how == 'fsdp1-views',
        device_id=torch.device('cpu'))
    return fsdp, fsdp.module


def _refused(step, optimizer, params_of, match):
    """``step()`` raises the named error, the optimizer never steps and no
    parameter moves."""
    steps = []
    optimizer.register_step_pre_hook(lambda *args: steps.append(1))
    before = _local(params_of)
    with pytest.raises(ShardedTrainingError, match=match):
        step()
    assert not steps
    for b, a in zip(before, _local(params_of)):
        assert torch.equal(b, a)


def sharding_worker(rank: int, world: int, port: int) -> None:
    from mmengine.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    os.environ['MASTER_ADDR'] = '127.0.0.1'
    os.environ['MASTER_PORT'] = str(port)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        data = sam_batch(4, rank)
        for how, name in (('fsdp1', "'_flat_param'"),
                          ('fsdp1-views', "'backbone.conv1.weight'"),
                          ('fsdp2', "'backbone.conv1.weight'")):
            kind = 'DTensor' if how == 'fsdp2' else 'FSDP1 flat parameter'
            match = f'parameter .*{name}.* is .*{kind}'
            # AGC, through the model's own train step
            model, inner = _shard(build_sam_model('ImageClassifier'), how)
            agc = AGCOptimWrapper(
                torch.optim.SGD(model.parameters(), lr=0.1),
                agc=dict(clipping=0.01, exclude=[]))
            _refused(lambda: model.train_step(data, agc), agc.optimizer, model,
                     'AGCOptimWrapper: ' + match)
            # SAM's two-pass step (FSDP2 has no no_sync: it would sync)
            model, inner = _shard(build_sam_model(), how)
            sam = SAMOptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
            _refused(
                lambda: sam_train_step(inner, data, sam, forward_model=model),
                sam.optimizer, model, 'SAMOptimWrapper: ' + match)
            # the EMA, as EMAHook builds it from the unwrapped model
            with pytest.raises(
                    ShardedTrainingError, match='NFNetEMA: ' + match):
                NFNetEMA(inner)

        # ZeRO keeps parameters whole but MMEngine's save would hang
        model = build_sam_model('ImageClassifier')
        ddp = DistributedDataParallel(model)
        for wrapper_type in (AGCOptimWrapper, SAMOptimWrapper):
            wrapper = wrapper_type(
                ZeroRedundancyOptimizer(
                    ddp.parameters(), optimizer_type='SGD', lr=0.1),
                agc=dict(clipping=0.01))
            _refused(
                lambda: sam_train_step(model, data, wrapper, ddp)
                if wrapper_type is SAMOptimWrapper else model.train_step(
                    data, wrapper), wrapper.optimizer, model,
                'ZeroRedundancyOptimizer is refused')
    finally:
        dist.destroy_process_group()


def test_fsdp_and_zero_are_refused_on_two_gloo_ranks():
    torch.multiprocessing.spawn(
        sharding_worker, args=(2, free_port()), nprocs=2, join=True)


def test_whole_parameters_pass():
    model = build_sam_model('ImageClassifier')
    assert all(sharded_kind(p) is None for p in model.parameters())
    refuse_sharded(model.named_parameters(), 'X',
                   torch.optim.SGD(model.parameters(), lr=0.1))
    flat = torch.nn.Parameter(torch.zeros(3))
    flat._fsdp_flattened = True
    with pytest.raises(ShardedTrainingError, match="X: parameter 'w'"):
        refuse_sharded([('w', flat)], 'X')

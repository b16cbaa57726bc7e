"""The configs' warm-up + cosine (MMEngine's ``LinearLR`` and
``CosineAnnealingLR``) resolve to the NFNet recipe and follow the run's length.

The oracle is the recipe written plainly: a linear warm-up from
``start_factor x lr`` to ``lr`` over ``w`` iterations, then
``lr x (1 + cos(pi (t - w) / (T - w))) / 2`` until the last iteration
``T - 1`` of the run.
"""
import math
import os.path as osp

import numpy as np
import pytest
import torch
from helpers import REPO
from mmengine.config import Config
from mmengine.dataset import BaseDataset
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS, PARAM_SCHEDULERS

import nfnet_mm  # noqa: F401

DEMO = osp.join(REPO, 'configs', 'fashion_mnist',
                'nfnet-demo_1xb128_fashion-mnist.py')


@DATASETS.register_module()
class _ScheduleFakeFashionMNIST(BaseDataset):
    """``num`` grey 28 px samples (Fashion-MNIST's train split has 60,000)."""

    METAINFO = dict(classes=[str(i) for i in range(10)])

    def __init__(self, num=60000, **kwargs):
        self.num = num
        super().__init__(serialize_data=False, **kwargs)

    def load_data_list(self):
        img = np.random.RandomState(0).randint(
            0, 256, (28, 28), dtype=np.uint8)
        return [dict(img=img, gt_label=i % 10) for i in range(self.num)]


def _demo_runner(tmp_path, **options):
    """The demo config on fake data, with ``--cfg-options``-style overrides."""
    cfg = Config.fromfile(DEMO)
    # fake images through the demo's pipeline, mixed and packed by its wrapper
    cfg.train_dataloader.dataset.dataset = dict(
        type='_ScheduleFakeFashionMNIST', pipeline=cfg.train_pipeline)
    cfg.train_dataloader.update(num_workers=0, persistent_workers=False)
    cfg.merge_from_dict(options)
    for key in ('val', 'test'):
        cfg[f'{key}_dataloader'] = cfg[f'{key}_cfg'] = cfg[
            f'{key}_evaluator'] = None
    cfg.default_hooks.checkpoint = None
    cfg.visualizer = dict(type='UniversalVisualizer', vis_backends=[])
    cfg.log_level = 'WARNING'
    cfg.work_dir = str(tmp_path)
    return Runner.from_cfg(cfg)


def _scheduled_lrs(runner):
    """The lr of every iteration, from the schedulers the Runner builds."""
    runner._train_loop = runner.build_train_loop(runner._train_loop)
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    schedulers = runner.build_param_scheduler(runner.param_schedulers)
    lrs = []
    for _ in range(runner.max_iters):  # as ParamSchedulerHook steps them
        lrs.append(runner.optim_wrapper.param_groups[0]['lr'])
        for scheduler in schedulers:
            scheduler.step()
    return np.array(lrs), schedulers


def _recipe(lr, start_factor, warmup, total):
    t = np.arange(total)
    warm = lr * (start_factor + (1 - start_factor) * t / (warmup - 1))
    cosine = lr * (1 + np.cos(math.pi * (t - warmup) / (total - warmup))) / 2
    return np.where(t < warmup, warm, cosine)


@pytest.mark.parametrize('options, epochs', [
    ({}, 6),  # the demo as configured
    ({
        'train_cfg.max_epochs': 3
    }, 3),
])
def test_demo_schedule_follows_the_run(tmp_path, options, epochs):
    runner = _demo_runner(tmp_path, **options)
    lrs, (warm, cos) = _scheduled_lrs(runner)
    iters_per_epoch = 469  # 60,000 / 128 images
    total = iters_per_epoch * epochs
    assert len(lrs) == total
    warmup = iters_per_epoch // 2  # half an epoch
    assert (warm.begin, warm.end, cos.begin, cos.end) == (0, warmup, warmup,
                                                          total)
    np.testing.assert_allclose(
        lrs, _recipe(0.4, 1e-3, warmup, total), rtol=1e-6, atol=1e-9)
    assert lrs[0] == pytest.approx(4e-4) and lrs[warmup] == pytest.approx(0.4)
    # annealed: the last iteration is the cosine's last step,
    # 0.4 sin^2(pi / 2n)
    steps = total - warmup
    assert lrs[-1] == lrs[warmup:].min() <= 0.4 * (math.pi / (2 * steps))**2


def test_imagenet_schedule_resolves_to_the_paper_at_default_length():
    """F0 at 4096 images per step: 313 iterations per epoch, 5 warm-up epochs,
    360."""
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'nfnet', 'nfnet-f0_64xb64_in1k.py'))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.4)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        warm, cos = (
            PARAM_SCHEDULERS.build(
                dict(s, end=s.get('end', cfg.train_cfg.max_epochs)),
                default_args=dict(optimizer=optimizer, epoch_length=313))
            for s in cfg.param_scheduler)
    assert (warm.begin, warm.end, warm.start_factor) == (0, 5 * 313, 1e-6)
    assert (cos.begin, cos.end, cos.T_max, cos.eta_min) == (5 * 313, 360 * 313,
                                                            355 * 313, 0.)

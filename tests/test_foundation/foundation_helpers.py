"""Tiny model, data and Runner settings shared by the foundation tests."""
import uuid

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner


class TinyNet(BaseModel):
    """A small conv net; ``forward`` follows MMEngine's model protocol."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, inputs, labels=None, mode='tensor'):
        logits = self.fc(F.relu(self.conv(inputs)).mean((2, 3)))
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, labels))
        return logits


class FakeData(torch.utils.data.Dataset):
    """Eight deterministic 3 x 8 x 8 samples with three classes."""

    metainfo = dict(classes=('a', 'b', 'c'))

    def __len__(self):
        return 8

    def __getitem__(self, index):
        gen = torch.Generator().manual_seed(index)
        return dict(
            inputs=torch.randn(3, 8, 8, generator=gen), labels=index % 3)


class StopAfterEpoch(Hook):
    """Raise after the given epoch's checkpoint is written (a killed job)."""

    priority = 'LOWEST'  # after CheckpointHook (VERY_LOW)

    def __init__(self, epoch):
        self.epoch = epoch

    def after_train_epoch(self, runner):
        if runner.epoch + 1 == self.epoch:
            raise _Stopped()


class _Stopped(Exception):
    pass


def make_runner(work_dir,
                max_epochs=2,
                resume=False,
                load_from=None,
                custom_hooks=None):
    """A CPU Runner with momentum SGD, a step LR schedule and a fixed seed.

    Each Runner gets its own experiment name, so that MMEngine's message hub (a
    per-name singleton) is not shared between the Runners of one test.
    """
    torch.manual_seed(0)  # the model is built here, before the Runner seeds
    model = TinyNet()
    return Runner(
        model=model,
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=FakeData(),
            batch_size=4,
            num_workers=0,
            collate_fn=dict(type='default_collate'),
            sampler=dict(type='DefaultSampler', shuffle=True, seed=0)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1], gamma=0.1),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1),
            logger=dict(type='LoggerHook', interval=100)),
        custom_hooks=custom_hooks,
        randomness=dict(seed=0),
        experiment_name=f'foundation_{uuid.uuid4().hex}',
        resume=resume,
        load_from=load_from,
        log_level='WARNING',
        default_scope='mmpretrain')


def run_until_stopped(runner):
    """Train, swallowing the simulated kill of :class:`StopAfterEpoch`."""
    try:
        runner.train()
    except _Stopped:
        pass


def write_image_folder(root, classes=('a', 'b'), per_class=2, size=16):
    """Write tiny grey PNGs as ``root/<class>/<i>.png`` (a CustomDataset
    layout)."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
            Image.fromarray(pixels, mode='L').save(folder / f'{i}.png')
    return root


#: A tiny MMPretrain classification config over an image folder; format with
#: ``data_root``. It uses ``GrayToRGB`` (ours) so that it only builds with
#: nfnet_mm.
TINY_CLASSIFIER_CFG = '''
default_scope = 'mmpretrain'
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet', depth=18, stem_channels=8, base_channels=8),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=2, in_channels=64,
              loss=dict(type='CrossEntropyLoss')))
data_preprocessor = dict(num_classes=2, mean=[128.] * 3, std=[64.] * 3)
pipeline = [
    dict(type='LoadImageFromFile', color_type='grayscale'),
    dict(type='GrayToRGB'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0,
    dataset=dict(
        type='CustomDataset', data_root={data_root!r}, pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9))
param_scheduler = dict(type='MultiStepLR', milestones=[1], by_epoch=True)
train_cfg = dict(by_epoch=True, max_epochs=1)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', interval=1))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
'''

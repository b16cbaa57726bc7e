"""Tiny models and data for the SAM tests (importable by spawned DDP
workers)."""
import torch
import torch.nn as nn
from mmpretrain.registry import DATASETS, MODELS
from mmpretrain.structures import DataSample
from torch.utils.data import Dataset

import nfnet_mm  # noqa: F401  (registers the SAM modules)

NUM_CLASSES = 3


@MODELS.register_module(force=True)
class SAMTestConvNet(nn.Module):
    """conv3x3 -> GELU -> conv3x3: a tiny backbone with a tuple output."""

    def __init__(self, in_channels: int = 3, width: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.act = nn.GELU()

    def forward(self, x):
        return (self.act(self.conv2(self.act(self.conv1(x)))), )


def model_cfg(model_type: str = 'SAMImageClassifier',
              batch_augments=None) -> dict:
    """A tiny classifier config (8x8 RGB inputs, 3 classes)."""
    preprocessor = dict(
        type='ClsDataPreprocessor',
        mean=[0., 0., 0.],
        std=[1., 1., 1.],
        num_classes=NUM_CLASSES)
    if batch_augments is not None:
        preprocessor['batch_augments'] = batch_augments
    return dict(
        type=model_type,
        backbone=dict(type='SAMTestConvNet'),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=NUM_CLASSES,
            in_channels=4,
            loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        data_preprocessor=preprocessor)


def build_model(model_type: str = 'SAMImageClassifier',
                seed: int = 0,
                batch_augments=None) -> nn.Module:
    torch.manual_seed(seed)
    return MODELS.build(model_cfg(model_type, batch_augments))


def make_batch(batch_size: int, seed: int) -> dict:
    """A data-loader batch: float images in [-1, 1] and labels."""
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.rand(batch_size, 3, 8, 8, generator=gen) * 2 - 1
    labels = torch.randint(0, NUM_CLASSES, (batch_size, ), generator=gen)
    samples = [DataSample().set_gt_label(int(label)) for label in labels]
    return dict(inputs=inputs, data_samples=samples)


@DATASETS.register_module(force=True)
class SAMFakeClsDataset(Dataset):
    """Random 8x8 RGB uint8 images with labels, as packed MMPretrain
    samples."""

    def __init__(self, length: int = 20, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.images = torch.randint(
            0, 256, (length, 3, 8, 8), generator=gen, dtype=torch.uint8)
        self.labels = torch.randint(0, NUM_CLASSES, (length, ), generator=gen)
        self.metainfo = dict(classes=[str(i) for i in range(NUM_CLASSES)])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return dict(
            inputs=self.images[index],
            data_samples=DataSample().set_gt_label(int(self.labels[index])))

"""What the tests share (not a test module: no ``test_`` prefix).

pytest.ini puts ``tests/`` on the path, so a test imports these as ``from
helpers import ...``; so does a process that ``torch.multiprocessing.spawn``
starts (it inherits the path). A subprocess that runs a script is given
:data:`TESTS` in its ``PYTHONPATH``.
"""
import copy
import importlib.util
import os
import os.path as osp
import runpy
import socket
import sys
import uuid
from typing import Dict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS, MODELS
from mmpretrain.structures import DataSample
from torch.utils.data import Dataset

import nfnet_mm  # noqa: F401  (registers NFNet and the SAM modules)
from nfnet_mm.models.backbones.nfnet import NFNet

#: This folder (what a test's subprocess needs in its ``PYTHONPATH`` to import
#: this module).
TESTS = osp.dirname(osp.abspath(__file__))
#: The repository root.
REPO = osp.dirname(TESTS)

# ------------------------------------------------------------ NFNet archs
#: The small arch of docs/design.md, stated as what differs from F0: fast on
#: CPU, every code path of the F-variants (transition blocks with and without
#: pooling, grouped convs, SE, final conv).
TINY_DIFF = dict(
    depths=[1, 1, 1, 1],
    widths=[32, 64, 96, 128],
    group_width=16,
    stem_widths=[8, 16, 16, 32])
#: :data:`TINY_DIFF` with two blocks in stages 1-3: non-transition blocks
#: (the signal-propagation reset, identity skips, stochastic depth rates).
TINY_DEEPER_DIFF = dict(TINY_DIFF, depths=[2, 2, 2, 1])
#: :data:`TINY_DIFF` resolved to all keys, for helpers that lay out
#: parameters from the arch.
TINY_ARCH = NFNet.parse_arch(TINY_DIFF)
#: Its output channels: the stage widths for indices 0-2, final_expansion x
#: the last width for index 3.
TINY_CHANNELS = [32, 64, 96, 2 * 128]
#: F0's arch, all keys (a copy).
F0_ARCH = copy.deepcopy(NFNet.arch_settings['f0'])
#: F0's output channels for out_indices (0, 1, 2, 3).
F0_CHANNELS = [256, 512, 1536, 3072]
#: Our arch matching the small timm dm_nfnet of :func:`timm_tiny_cfg` (for
#: fast converter and parity tests; two blocks in stage 2).
TIMM_TINY_ARCH = dict(
    depths=[1, 2, 1, 1],
    widths=[32, 64, 96, 128],
    group_width=16,
    stem_widths=[4, 8, 16, 32])


def timm_tiny_cfg():
    """timm's ``NormFreeCfg`` of a small dm_nfnet: :data:`TIMM_TINY_ARCH` in
    timm (``timm.models.nfnet.NormFreeNet(timm_tiny_cfg(), ...)``)."""
    from dataclasses import replace

    from timm.models.nfnet import _dm_nfnet_cfg
    return replace(
        _dm_nfnet_cfg((1, 2, 1, 1), channels=(32, 64, 96, 128)),
        stem_chs=32,
        group_size=16)


def classifier_cfg(arch='f0', num_classes=1000, **backbone):
    """An ImageClassifier config: NFNet ``arch``, NFNetClsHead (dropout
    0.2)."""
    full = NFNet.parse_arch(arch)
    in_ch = full['widths'][-1] * full['final_expansion']
    return dict(
        type='ImageClassifier',
        backbone=dict(type='NFNet', arch=arch, **backbone),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='NFNetClsHead',
            num_classes=num_classes,
            in_channels=in_ch,
            dropout_rate=0.2))


def randomize_(model, trained_like=False):
    """Make skip gains, gains and biases non-trivial (they init to 0/1).

    ``trained_like`` keeps them in a range like a trained NFNet's (small skip
    gains), so that a deep net's output stays O(1) and an absolute float32
    tolerance is meaningful.
    """
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            u = torch.rand(p.shape, generator=g)
            if name.endswith('skip_gain') and trained_like:
                p.copy_(0.1 + 0.2 * u)
            elif name.endswith('gain'):
                p.copy_(0.9 + 0.2 * u if trained_like else 0.5 + u)
            elif name.endswith('bias'):
                p.copy_(
                    torch.randn(p.shape, generator=g) *
                    (0.02 if trained_like else 0.1))
    return model


def deepmind_tree(arch: dict,
                  num_classes: int = 10,
                  in_channels: int = 3,
                  seed: int = 0,
                  empty: bool = False) -> Dict[str, Dict[str, np.ndarray]]:
    """A parameter tree named and laid out as DeepMind's Haiku NFNet.

    Written from DeepMind's naming rules (``nfnet.py``): Haiku modules
    ``NFNet/~/stem_conv0..3``, ``NFNet/~/nf_block`` then ``nf_block_1`` ...
    numbered over all blocks, convs ``conv0, conv1, conv1b, conv2`` and
    ``conv_shortcut`` (only where the shape changes), an SE module
    ``squeeze_excite`` with ``linear``/``linear_1``; conv ``w`` is HWIO with
    ``I = in / groups``, linear ``w`` is IO.
    """
    rng = np.random.default_rng(seed)

    def array(*shape):
        if empty:
            return np.empty(shape, np.float32)
        return rng.standard_normal(shape, dtype=np.float32)

    tree = {}

    def conv(name, k, cin, cout, groups=1):
        tree[f'NFNet/~/{name}'] = {
            'w': array(k, k, cin // groups, cout),
            'gain': array(cout),
            'bias': array(cout),
        }

    def linear(name, cin, cout):
        tree[f'NFNet/~/{name}'] = {'w': array(cin, cout), 'b': array(cout)}

    ch = in_channels
    for i, width in enumerate(arch['stem_widths']):
        conv(f'stem_conv{i}', 3, ch, width)
        ch = width
    index = 0
    for depth, width, stride in zip(arch['depths'], arch['widths'],
                                    arch['strides']):
        for b in range(depth):
            name = 'nf_block' if index == 0 else f'nf_block_{index}'
            mid = int(width * arch['bottleneck_ratio'])
            groups = mid // arch['group_width']
            conv(f'{name}/~/conv0', 1, ch, mid)
            conv(f'{name}/~/conv1', 3, mid, mid, groups)
            conv(f'{name}/~/conv1b', 3, mid, mid, groups)
            conv(f'{name}/~/conv2', 1, mid, width)
            if (stride if b == 0 else 1) > 1 or ch != width:
                conv(f'{name}/~/conv_shortcut', 1, ch, width)
            hidden = max(1, int(width * arch['se_ratio']))
            linear(f'{name}/~/squeeze_excite/~/linear', width, hidden)
            linear(f'{name}/~/squeeze_excite/~/linear_1', hidden, width)
            tree[f'NFNet/~/{name}'] = {'skip_gain': array()}
            ch = width
            index += 1
    conv('final_conv', 1, ch, int(ch * arch['final_expansion']))
    linear('linear', int(ch * arch['final_expansion']), num_classes)
    return tree


# ------------------------------------------------------------------ tools
def run_tool(relpath: str, *args: str) -> int:
    """Run a command line under tools/ in this process; its exit status. The
    checkpoint opt-in the tools enable would outlive the test here: it is
    skipped (subprocess tests cover it)."""
    argv, enable = sys.argv, nfnet_mm.enable_safe_checkpoints
    sys.argv = [relpath, *map(str, args)]
    nfnet_mm.enable_safe_checkpoints = lambda: None
    try:
        runpy.run_path(osp.join(REPO, relpath), run_name='__main__')
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv, nfnet_mm.enable_safe_checkpoints = argv, enable
    return 0


def load_tool(name: str):
    """tools/<name>.py as a fresh module (not run as ``__main__``)."""
    spec = importlib.util.spec_from_file_location(
        f'nfnet_mm_tools_{name}', osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: A classification config for the deploy tools; format with ``arch`` (a
#: repr), ``feat`` (the head's input channels), ``resize`` and ``crop``.
DEPLOY_MODEL_CFG = """
custom_imports = dict(imports=['nfnet_mm'], allow_failed_imports=False)
default_scope = 'mmpretrain'
model = dict(
    type='ImageClassifier',
    backbone=dict(type='NFNet', arch={arch}),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='NFNetClsHead', num_classes=10, in_channels={feat}))
data_preprocessor = dict(num_classes=10, mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], to_rgb=True)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale={resize}, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size={crop}),
    dict(type='PackInputs'),
]
test_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
"""


def write_deploy_config(folder, arch=TINY_ARCH, crop=64, feat=None):
    """Write :data:`DEPLOY_MODEL_CFG` as ``folder/cfg.py``; its path."""
    feat = feat or arch['widths'][-1] * arch['final_expansion']
    path = osp.join(str(folder), 'cfg.py')
    with open(path, 'w') as f:
        f.write(
            DEPLOY_MODEL_CFG.format(
                arch=repr(arch), feat=feat, resize=crop + 8, crop=crop))
    return path


class RunsCommand:
    """A pickled object that would run a shell command when unpickled: it
    touches ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a gloo process group)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- Runner
class TinyRunnerNet(BaseModel):
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


class FakeRunnerData(Dataset):
    """Eight deterministic 3 x 8 x 8 samples with three classes (for
    :class:`TinyRunnerNet`)."""

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
    model = TinyRunnerNet()
    return Runner(
        model=model,
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=FakeRunnerData(),
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


# ------------------------------------------------------------------- AGC
class AGCTestNet(nn.Module):
    """Conv, grouped conv, a per-channel gain (1-d), a skip gain (0-d), a
    head: every kind of AGC unit."""

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


def agc_batches(steps: int, batch: int, seed: int = 1):
    """Fixed (inputs, labels) batches for :class:`AGCTestNet`; large inputs
    make AGC clip."""
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


def agc_train_steps(wrapper, model, batches, wrapped=None):
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


def agc_ddp_worker(rank: int, world: int, port: int, out_dir: str, steps: int,
                   batch: int, agc: dict, bucket_view: bool) -> None:
    """One gloo rank: DDP (``gradient_as_bucket_view=bucket_view``) over
    AGCTestNet, AGC wrapper, its shard of each batch (a module-level function,
    so that ``torch.multiprocessing.spawn`` can import it in the child
    processes)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from nfnet_mm.engine.optimizers import AGCOptimWrapper

    torch.set_num_threads(1)
    os.environ['MASTER_ADDR'] = '127.0.0.1'
    os.environ['MASTER_PORT'] = str(port)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = AGCTestNet()
        ddp = DistributedDataParallel(
            model, gradient_as_bucket_view=bucket_view)
        wrapper = AGCOptimWrapper(
            torch.optim.SGD(ddp.parameters(), lr=0.5, momentum=0.9), agc=agc)
        shard = batch // world
        batches = [(x[rank * shard:(rank + 1) * shard],
                    y[rank * shard:(rank + 1) * shard])
                   for x, y in agc_batches(steps, batch)]
        fracs = agc_train_steps(wrapper, model, batches, wrapped=ddp)
        torch.save(
            dict(
                params={
                    n: p.detach().clone()
                    for n, p in model.named_parameters()
                },
                fracs=fracs), os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------------------- SAM
SAM_NUM_CLASSES = 3


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


def sam_model_cfg(model_type: str = 'SAMImageClassifier',
                  batch_augments=None) -> dict:
    """A tiny classifier config (8x8 RGB inputs, 3 classes)."""
    preprocessor = dict(
        type='ClsDataPreprocessor',
        mean=[0., 0., 0.],
        std=[1., 1., 1.],
        num_classes=SAM_NUM_CLASSES)
    if batch_augments is not None:
        preprocessor['batch_augments'] = batch_augments
    return dict(
        type=model_type,
        backbone=dict(type='SAMTestConvNet'),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=SAM_NUM_CLASSES,
            in_channels=4,
            loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        data_preprocessor=preprocessor)


def build_sam_model(model_type: str = 'SAMImageClassifier',
                    seed: int = 0,
                    batch_augments=None) -> nn.Module:
    """:func:`sam_model_cfg` built with the torch seed ``seed``."""
    torch.manual_seed(seed)
    return MODELS.build(sam_model_cfg(model_type, batch_augments))


def sam_batch(batch_size: int, seed: int) -> dict:
    """A data-loader batch for :func:`sam_model_cfg`: float images in [-1, 1]
    and labels."""
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.rand(batch_size, 3, 8, 8, generator=gen) * 2 - 1
    labels = torch.randint(0, SAM_NUM_CLASSES, (batch_size, ), generator=gen)
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
        self.labels = torch.randint(
            0, SAM_NUM_CLASSES, (length, ), generator=gen)
        self.metainfo = dict(classes=[str(i) for i in range(SAM_NUM_CLASSES)])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return dict(
            inputs=self.images[index],
            data_samples=DataSample().set_gt_label(int(self.labels[index])))


# ------------------------------------------- downstream (MMSeg / MMDet)
DOWNSTREAM_CONFIG_DIR = osp.join(REPO, 'configs', 'downstream')

DOWNSTREAM_CUSTOM_IMPORTS = dict(
    imports=['nfnet_mm', 'nfnet_mm.compat.safe_checkpoints'],
    allow_failed_imports=False)


def load_downstream_config(name: str) -> Config:
    """Load a config of configs/downstream (this imports its
    custom_imports)."""
    return Config.fromfile(osp.join(DOWNSTREAM_CONFIG_DIR, name))


def check_backbone_config(cfg: Config, arch: str = 'f0') -> None:
    """What every downstream config must say about the backbone."""
    assert cfg.custom_imports == DOWNSTREAM_CUSTOM_IMPORTS
    backbone = cfg.model.backbone
    assert backbone.type == 'mmpretrain.NFNet'
    assert backbone.arch == arch
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    assert backbone.init_cfg.type == 'StrictPretrained'
    assert backbone.init_cfg.prefix == 'backbone.'


def check_backbone_grads(backbone, frozen_stages: int) -> None:
    """Frozen parameters get no gradient; every other one a finite one.

    Residual branches start at zero (SkipInit), so at init their conv weights
    get zero gradients; the skip gains, the stem (through the shortcuts) and
    the final conv do get non-zero ones.
    """
    frozen = []
    if frozen_stages >= 0:
        frozen.append(backbone.stem)
    frozen.extend(backbone.stages[:max(frozen_stages, 0)])
    frozen_ids = {id(p) for m in frozen for p in m.parameters()}
    for name, param in backbone.named_parameters():
        if id(param) in frozen_ids:
            assert not param.requires_grad, name
            assert param.grad is None, name
        else:
            assert param.requires_grad, name
            assert param.grad is not None, name
            assert torch.isfinite(param.grad).all(), name
    for s, stage in enumerate(backbone.stages):
        if s >= frozen_stages:
            for block in stage:
                assert block.skip_gain.grad.abs() > 0
    assert backbone.final_conv.weight.grad.abs().sum() > 0
    if frozen_stages < 0:
        assert backbone.stem.conv1.weight.grad.abs().sum() > 0

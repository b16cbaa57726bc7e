"""Every recipe config builds and trains two iterations on CPU (tiny arch).

The F0-F6 ImageNet configs are also checked against the paper's values
(Table 1 and Appendix A), including the realised optimizer parameter groups.
"""
import copy
import glob
import json
import os.path as osp
import re

import mmcv
import numpy as np
import pytest
import torch
from helpers import REPO, TINY_ARCH
from mmengine.config import Config
from mmengine.dataset import BaseDataset, Compose
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS, MODELS, TRANSFORMS

import nfnet_mm  # noqa: F401

CONFIG_DIR = osp.join(REPO, 'configs')
# mmdet/mmseg/mmdeploy configs belong to other test folders
OTHER_OWNERS = ('deploy', 'downstream', '_base_')

# the paper's values (Table 1 and Appendix A): train px, test px, RandAugment
# magnitude, dropout
PAPER = {
    'f0': (192, 256, 5, 0.2),
    'f1': (224, 320, 10, 0.3),
    'f2': (256, 352, 10, 0.4),
    'f3': (320, 416, 15, 0.4),
    'f4': (384, 512, 15, 0.5),
    'f5': (416, 544, 15, 0.5),
    'f6': (448, 576, 15, 0.5),
}


def _configs():
    paths = glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    rel = sorted(osp.relpath(p, CONFIG_DIR) for p in paths)
    return [r for r in rel if r.split(osp.sep)[0] not in OTHER_OWNERS]


ALL_CONFIGS = _configs()
IMAGENET_CONFIGS = [
    c for c in ALL_CONFIGS
    if re.fullmatch(r'nfnet/nfnet-f\d_\d+xb\d+(-sam)?_in1k\.py', c)
]

_CFG_CACHE = {}


def _load(rel):
    if rel not in _CFG_CACHE:
        _CFG_CACHE[rel] = Config.fromfile(osp.join(CONFIG_DIR, rel))
    return copy.deepcopy(_CFG_CACHE[rel])


@DATASETS.register_module()
class _RecipeTinyFakeDataset(BaseDataset):
    """Random 32 px RGB images (already at network size)."""

    def __init__(self,
                 num=4,
                 num_classes=10,
                 size=32,
                 pipeline=(dict(type='PackInputs'), ),
                 **kwargs):
        self.num, self.num_classes, self.size = num, num_classes, size
        super().__init__(
            pipeline=pipeline,
            serialize_data=False,
            metainfo=dict(classes=[str(c) for c in range(num_classes)]),
            **kwargs)

    def load_data_list(self):
        rng = np.random.RandomState(0)
        return [
            dict(
                img=rng.randint(
                    0, 256, (self.size, self.size, 3), dtype=np.uint8),
                gt_label=int(i % self.num_classes)) for i in range(self.num)
        ]


def _cpu_optim_wrapper(cfg_optim):
    cfg_optim = copy.deepcopy(cfg_optim)
    if cfg_optim['type'].startswith('Amp'):
        # no bf16 autocast on this CPU: the AMP wrapper's plain variant
        cfg_optim['type'] = cfg_optim['type'][3:]
        cfg_optim.pop('dtype', None)
        cfg_optim.pop('loss_scale', None)
    return cfg_optim


def _tiny_model_cfg(cfg):
    model = copy.deepcopy(cfg.model)
    model.backbone.arch = TINY_ARCH  # over the family's base arch
    model.backbone.pop('depth', None)
    model.backbone.init_cfg = None  # no pretrained file in tests
    with torch.device('meta'):
        backbone = MODELS.build(model.backbone)
    model.head.in_channels = backbone.num_features
    return model


def _sample_for(pipeline, tmp_path):
    first = pipeline[0]['type'] if pipeline else None
    rng = np.random.RandomState(0)
    if first == 'LoadImageFromFile':
        path = str(tmp_path / 'img.jpg')
        mmcv.imwrite(rng.randint(0, 256, (300, 400, 3), dtype=np.uint8), path)
        return dict(img_path=path, gt_label=1)
    if first == 'GrayToRGB':  # Fashion-MNIST: 28 x 28 grey
        return dict(
            img=rng.randint(0, 256, (28, 28), dtype=np.uint8), gt_label=1)
    return dict(
        img=rng.randint(0, 256, (32, 32, 3), dtype=np.uint8), gt_label=1)


def _pipeline(dataset):
    """The transforms a sample goes through (mixing wrapper: minus the mix)."""
    if dataset.type == 'MixupCutMixDataset':
        return (dataset.dataset.pipeline + list(dataset.get('augment', [])) +
                [dataset.get('pack', dict(type='PackInputs'))])
    return dataset.pipeline


def _run_pipeline(cfg, loader, tmp_path):
    pipeline = _pipeline(cfg[loader].dataset)
    # the Runner builds pipelines in the config's default scope
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        transforms = Compose([TRANSFORMS.build(t) for t in pipeline])
    out = transforms(_sample_for(pipeline, tmp_path))
    return out['inputs']


def test_configs_found():
    assert len(ALL_CONFIGS) >= 22
    assert len(IMAGENET_CONFIGS) == 16  # F0-F6 x 2 batches + 2 SAM


@pytest.mark.parametrize('rel', ALL_CONFIGS)
def test_config_pipelines(rel, tmp_path):
    cfg = _load(rel)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        inputs = _run_pipeline(cfg, loader, tmp_path)
        assert inputs.ndim == 3 and inputs.shape[0] == 3, (loader,
                                                           inputs.shape)
        assert inputs.shape[1] == inputs.shape[2]


@pytest.fixture
def fast_runner(monkeypatch):
    """Skip the Runner's slow bookkeeping (environment probing, yapf)."""
    monkeypatch.setattr(Runner, '_log_env', lambda self, env_cfg: None)
    monkeypatch.setattr(Config, 'pretty_text',
                        property(lambda self: repr(self._cfg_dict)))


@pytest.mark.slow
@pytest.mark.parametrize('rel', ALL_CONFIGS)
def test_config_trains_two_iterations(rel, tmp_path, fast_runner):
    cfg = _load(rel)
    cfg.work_dir = str(tmp_path)
    cfg.model = _tiny_model_cfg(cfg)
    cfg.optim_wrapper = _cpu_optim_wrapper(cfg.optim_wrapper)
    cfg.pop('model_wrapper_cfg', None)  # DDP wrappers: not distributed here
    num_classes = cfg.model.head.num_classes
    # three iterations: one of warm-up, two of cosine
    fake = dict(type='_RecipeTinyFakeDataset', num=12, num_classes=num_classes)
    dataset = cfg.train_dataloader.dataset
    if dataset.type == 'MixupCutMixDataset':  # keep the configured mixing
        dataset.dataset = dict(fake, pipeline=[])
        fake = dataset
    cfg.train_dataloader = dict(
        batch_size=4,
        num_workers=0,
        dataset=fake,
        sampler=dict(type='DefaultSampler', shuffle=False))
    by_epoch = cfg.train_cfg.get('by_epoch', True)
    if by_epoch:
        cfg.train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=10)
    else:
        cfg.train_cfg = dict(by_epoch=False, max_iters=3, val_interval=10)
    # the cosine must begin before the run ends
    cfg.param_scheduler[0].end = cfg.param_scheduler[1].begin = (
        0.5 if by_epoch else 2)
    for key in ('val', 'test'):
        cfg[f'{key}_dataloader'] = None
        cfg[f'{key}_cfg'] = None
        cfg[f'{key}_evaluator'] = None
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=1, by_epoch=cfg.train_cfg['by_epoch'])
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_level = 'WARNING'
    cfg.visualizer = dict(type='UniversalVisualizer', vis_backends=[])

    runner = Runner.from_cfg(cfg)
    model = runner.model
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    runner.train()
    assert runner.iter == 3
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert 'head.fc.weight' in changed and 'backbone.stem.conv1.weight' in \
        changed
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert np.isfinite(loss)
    # EMA hook (all recipes): the checkpoint keeps both weight sets
    ckpts = glob.glob(osp.join(str(tmp_path), '*.pth'))
    assert ckpts, 'no checkpoint written'
    ckpt = torch.load(ckpts[0], map_location='cpu', weights_only=False)
    assert 'ema_state_dict' in ckpt and 'state_dict' in ckpt
    assert 'module.head.fc.weight' in ckpt['ema_state_dict']
    assert 'head.fc.weight' in ckpt['state_dict']


# ------------------------------------------------------- paper values


def _variant(rel):
    return re.search(r'nfnet-(f\d)', rel).group(1)


def _by_type(pipeline, type_name):
    found = [t for t in pipeline if t['type'] == type_name]
    assert len(found) == 1, f'expected one {type_name}'
    return found[0]


@pytest.mark.parametrize('rel', IMAGENET_CONFIGS)
def test_imagenet_configs_carry_paper_values(rel, tmp_path):
    cfg = _load(rel)
    v = _variant(rel)
    train_px, test_px, magnitude, dropout = PAPER[v]

    # data: inception crop, flip, half MixUp / half CutMix of distinct
    # images, then RandAugment 4 x M on the mixed images
    mix = cfg.train_dataloader.dataset
    assert mix.type == 'MixupCutMixDataset' and mix.mixup_alpha == 0.2
    assert mix.partners == 'distinct' and not mix.augment_before_mix
    assert mix.get('mix_prob', 1.) == 1.
    train = mix.dataset.pipeline
    crop = _by_type(train, 'RandomResizedCrop')
    assert crop['scale'] == train_px
    assert tuple(crop['crop_ratio_range']) == (0.08, 1.0)
    assert tuple(crop['aspect_ratio_range']) == pytest.approx((3 / 4, 4 / 3))
    assert crop['interpolation'] == 'bicubic'
    assert _by_type(train, 'RandomFlip')['prob'] == 0.5
    assert train[-1]['type'] == 'RandomFlip'  # nothing after the crop+flip
    (ra, ) = mix.augment
    assert ra == dict(type='NFRandAugment', num_layers=4, magnitude=magnitude)
    # evaluation: DeepMind's resize_crop_32, a square bicubic resize
    test = cfg.test_dataloader.dataset.pipeline
    assert [t['type'] for t in test
            ] == ['LoadImageFromFile', 'Resize', 'CenterCrop', 'PackInputs']
    assert test[1] == dict(
        type='Resize',
        scale=(test_px + 32, test_px + 32),
        keep_ratio=False,
        backend='pillow',
        interpolation='bicubic')
    assert test[2]['crop_size'] == test_px
    assert cfg.test_dataloader.dataset.data_root == 'data/imagenet'
    # realised sizes
    assert _run_pipeline(cfg, 'train_dataloader', tmp_path).shape[-1] == \
        train_px
    assert _run_pipeline(cfg, 'test_dataloader', tmp_path).shape[-1] == \
        test_px

    # model: dropout, stochastic depth 0.25, label smoothing 0.1, mixing
    m = cfg.model
    assert m.backbone.arch == v and m.backbone.drop_path_rate == 0.25
    assert m.head.type == 'NFNetClsHead' and m.head.dropout_rate == dropout
    assert m.head.in_channels == 3072 and m.head.num_classes == 1000
    assert m.head.loss == dict(
        type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')
    assert 'train_cfg' not in m  # no batch augments on the model side

    # optimizer: lr = 0.1 x total batch / 256, Nesterov 0.9, wd 2e-5
    gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)[-_]', rel).groups())
    assert cfg.train_dataloader.batch_size == per_gpu
    total = gpus * per_gpu
    opt = cfg.optim_wrapper.optimizer
    assert opt.type == 'SGD' and opt.nesterov and opt.momentum == 0.9
    assert opt.lr == pytest.approx(0.1 * total / 256)
    assert opt.weight_decay == 2e-5
    assert cfg.auto_scale_lr.base_batch_size == total
    # bf16 AMP with AGC 0.01 on all but the classifier weight
    sam = '-sam' in rel
    assert cfg.optim_wrapper.type == ('AmpSAMOptimWrapper'
                                      if sam else 'AmpAGCOptimWrapper')
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    assert cfg.optim_wrapper.agc == dict(
        clipping=0.01, eps=1e-3, exclude=['head.fc.weight'])
    if sam:
        assert cfg.model.type == 'SAMImageClassifier'
        assert cfg.optim_wrapper.rho == 0.05
        assert cfg.optim_wrapper.ascent_fraction == 0.2
    # DDP as the Runner's default, plus gradients as bucket views (checked
    # with AGC and SAM: test_agc.py / test_sam.py, test_ddp_*[True])
    assert cfg.model_wrapper_cfg == dict(
        type='SAMDistributedDataParallel' if sam else
        'MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=False,
        gradient_as_bucket_view=True)

    # schedule: 5 warm-up epochs from ~0, cosine to 0 at the run's end (epoch
    # 360), per iter (resolved: tests/test_engine/test_schedulers.py)
    warm, cos = cfg.param_scheduler
    assert warm.type == 'LinearLR' and warm.start_factor <= 1e-5
    assert (warm.begin, warm.end) == (0, 5) and warm.convert_to_iter_based
    assert cos.type == 'CosineAnnealingLR' and cos.eta_min == 0
    assert cos.begin == 5 and 'end' not in cos and 'T_max' not in cos
    assert cos.convert_to_iter_based
    assert cfg.train_cfg.max_epochs == 360

    # EMA decay 0.99999 (momentum = 1 - decay), evaluation on the EMA
    ema = [h for h in cfg.custom_hooks if h['type'] == 'EMAHook']
    assert len(ema) == 1 and ema[0]['ema_type'] == 'NFNetEMA'
    assert 1 - ema[0]['momentum'] == pytest.approx(0.99999, abs=1e-12)
    assert ema[0]['evaluate_on_ema']


def _reference_resize_crop_32(img, test_px):
    """DeepMind's resize_crop_32 written plainly (PIL's bicubic for TF's)."""
    from PIL import Image
    size = test_px + 32  # crop_pct > 1 is read as padding pixels
    square = np.asarray(
        Image.fromarray(img).resize((size, size), Image.BICUBIC))
    offset = ((size - test_px) + 1) // 2
    return square[offset:offset + test_px, offset:offset + test_px]


@pytest.mark.parametrize('variant', sorted(PAPER))
def test_eval_preprocessing_is_the_references(variant, tmp_path):
    cfg = _load(f'nfnet/nfnet-{variant}_8xb128_in1k.py')
    test_px = PAPER[variant][1]
    rng = np.random.RandomState(0)
    # a non-square image: the aspect ratio is not kept
    img = rng.randint(0, 256, (300, 500, 3), dtype=np.uint8)
    path = str(tmp_path / 'wide.png')
    mmcv.imwrite(img, path)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        pipeline = Compose([
            TRANSFORMS.build(t) for t in cfg.test_dataloader.dataset.pipeline
        ])
    ours = pipeline(dict(img_path=path))['inputs'].permute(1, 2, 0).numpy()
    expected = _reference_resize_crop_32(mmcv.imread(path), test_px)
    np.testing.assert_array_equal(ours, expected)


def _realised_groups(cfg):
    model = MODELS.build(_tiny_model_cfg(cfg))
    # as the Runner does: our wrappers live in MMPretrain's scope
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        wrapper = build_optim_wrapper(model,
                                      _cpu_optim_wrapper(cfg.optim_wrapper))
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            decay[names[id(p)]] = group['weight_decay']
    return model, wrapper, decay


@pytest.mark.parametrize('rel', [
    'nfnet/nfnet-f0_8xb128_in1k.py', 'nfnet/nfnet-f6_8xb128-sam_in1k.py',
    'nfnet/nfnet-f0_in1k-pre_8xb32_cifar10.py'
])
def test_realised_weight_decay_groups(rel):
    cfg = _load(rel)
    base_wd = cfg.optim_wrapper.optimizer.weight_decay
    model, wrapper, decay = _realised_groups(cfg)
    assert len(decay) == len(list(model.parameters()))
    kinds = set()
    for name, wd in decay.items():
        # no decay on gains, biases (convs, SE, classifier) or skip gains
        exempt = name.endswith(('.bias', '.gain', 'skip_gain'))
        assert wd == (0. if exempt else base_wd), name
        kinds.add(name.rsplit('.', 1)[-1])
    assert {'weight', 'bias', 'gain', 'skip_gain'} <= kinds
    assert decay['head.fc.weight'] == base_wd
    assert decay['head.fc.bias'] == 0.
    # the AGC exclusion names a real parameter
    assert 'head.fc.weight' in decay


def test_every_imagenet_config_fits_an_80gb_gpu():
    """By the memory planner's committed measurement, which must describe the
    configs as they are (rerun ``python -m lab.plan_memory --out
    docs/memory/plan_memory_80gb.json`` after changing one)."""
    with open(osp.join(REPO, 'docs', 'memory',
                       'plan_memory_80gb.json')) as f:
        rows = {r['config']: r for r in json.load(f)['rows']}
    for rel in IMAGENET_CONFIGS:
        cfg = _load(rel)
        row = rows[osp.join('configs', rel)]
        assert row['gpu_gib'] == 80
        assert row['batch_per_gpu'] == cfg.train_dataloader.batch_size, rel
        assert row['with_cp'] == cfg.model.backbone.get('with_cp', False), rel
        assert row['fits'] and row['need_gib'] < 0.9 * (80 - 2), rel

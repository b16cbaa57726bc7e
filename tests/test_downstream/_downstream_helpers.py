"""Shared bits of the downstream (MMSeg / MMDet) tests."""
import os.path as osp

from helpers import REPO as REPO_ROOT
from mmengine.config import Config
from shared_archs import TINY_ARCH, TINY_CHANNELS  # noqa: F401

CONFIG_DIR = osp.join(REPO_ROOT, 'configs', 'downstream')

F0_CHANNELS = [256, 512, 1536, 3072]

CUSTOM_IMPORTS = dict(
    imports=['nfnet_mm', 'nfnet_mm.compat.safe_checkpoints'],
    allow_failed_imports=False)


def load_config(name: str) -> Config:
    """Load a config of configs/downstream (this imports its
    custom_imports)."""
    return Config.fromfile(osp.join(CONFIG_DIR, name))


def check_backbone_config(cfg: Config) -> None:
    """What every downstream config must say about the backbone."""
    assert cfg.custom_imports == CUSTOM_IMPORTS
    backbone = cfg.model.backbone
    assert backbone.type == 'mmpretrain.NFNet'
    assert backbone.arch == 'f0'
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    assert backbone.init_cfg.type == 'StrictPretrained'
    assert backbone.init_cfg.prefix == 'backbone.'


def check_backbone_grads(backbone, frozen_stages: int) -> None:
    """Frozen parameters get no gradient; every other one a finite one.

    Residual branches start at zero (SkipInit), so at init their conv weights
    get zero gradients; the skip gains, the stem (through the shortcuts) and
    the final conv do get non-zero ones.
    """
    import torch
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

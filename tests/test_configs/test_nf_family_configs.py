"""The six timm-trained NF models: names, configs and timm's evaluation."""
import os.path as osp

import numpy as np
import pytest
import timm
import torch
from helpers import REPO
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope
from mmpretrain import get_model
from mmpretrain.registry import MODELS, TRANSFORMS
from PIL import Image

import nfnet_mm  # noqa: F401
from nfnet_mm.converters import timm_model_cfg

# our model name -> (timm's name, its config)
WEIGHTED = {
    'nfnet-l0_3rdparty_in1k': ('nfnet_l0', 'nfnet/nfnet-l0_8xb128_in1k.py'),
    'eca-nfnet-l0_3rdparty_in1k':
    ('eca_nfnet_l0', 'nfnet/eca-nfnet-l0_8xb128_in1k.py'),
    'eca-nfnet-l1_3rdparty_in1k':
    ('eca_nfnet_l1', 'nfnet/eca-nfnet-l1_8xb128_in1k.py'),
    'eca-nfnet-l2_3rdparty_in1k':
    ('eca_nfnet_l2', 'nfnet/eca-nfnet-l2_8xb128_in1k.py'),
    'nf-resnet50_3rdparty_in1k':
    ('nf_resnet50', 'nf_resnet/nf-resnet50_8xb128_in1k.py'),
    'nf-regnet-b1_3rdparty_in1k': ('nf_regnet_b1',
                                   'nf_regnet/nf-regnet-b1_8xb128_in1k.py'),
}


@pytest.mark.parametrize('name', [
    n if n.startswith('nf-regnet') else pytest.param(
        n, marks=pytest.mark.slow) for n in sorted(WEIGHTED)
])
def test_name_builds_timms_model_and_its_config(name):
    timm_name, rel = WEIGHTED[name]
    with torch.device('meta'):
        model = get_model(name)
        theirs = timm.create_model(timm_name)
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in theirs.parameters())
    # the named config is the converter's architecture, key for key
    with torch.device('meta'):
        ref = MODELS.build(timm_model_cfg(timm_name))
    assert {
        k: v.shape
        for k, v in model.state_dict().items()
    } == {
        k: v.shape
        for k, v in ref.state_dict().items()
    }
    assert model._config.filename.endswith(rel)


@pytest.mark.parametrize('name', [
    n if n.startswith('nf-regnet') else pytest.param(
        n, marks=pytest.mark.slow) for n in sorted(WEIGHTED)
])
def test_test_pipeline_is_timms_evaluation(name, tmp_path):
    """Our test pipeline and data preprocessor give timm's eval tensor."""
    timm_name, rel = WEIGHTED[name]
    cfg = Config.fromfile(osp.join(REPO, 'configs', rel))
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, (333, 500, 3), dtype=np.uint8)  # RGB
    path = str(tmp_path / 'wide.png')
    Image.fromarray(img).save(path)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        pipeline = Compose([
            TRANSFORMS.build(t) for t in cfg.test_dataloader.dataset.pipeline
        ])
    preprocessor = MODELS.build(
        dict(type='ClsDataPreprocessor', **cfg.data_preprocessor))
    packed = pipeline(dict(img_path=path))
    ours = preprocessor(dict(inputs=[packed['inputs']]), False)['inputs'][0]
    with torch.device('meta'):
        theirs = timm.create_model(timm_name)
    data_cfg = timm.data.resolve_data_config({},
                                             model=theirs,
                                             use_test_size=True)
    assert data_cfg['interpolation'] == 'bicubic'
    ref = timm.data.create_transform(**data_cfg)(Image.open(path))
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-4)

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


@pytest.mark.slow
def test_inferencer_on_converted_weights_gives_timms_scores(tmp_path):
    """End to end: timm's weights converted, our name's config and pipeline,
    MMPretrain's inferencer: timm's probabilities on timm's eval tensor."""
    from mmpretrain import ImageClassificationInferencer

    from nfnet_mm.converters import convert_timm_file
    torch.manual_seed(0)
    theirs = timm.create_model('nf_regnet_b1').eval()
    with torch.no_grad():
        for key, p in theirs.named_parameters():
            if key.endswith(('gain', 'bias')):
                p.add_(0.3 * torch.randn_like(p))
    src, dst = str(tmp_path / 'timm.pth'), str(tmp_path / 'ours.pth')
    torch.save(theirs.state_dict(), src)
    convert_timm_file(src, dst, model='nf_regnet_b1')
    img = np.random.RandomState(0).randint(0, 256, (300, 400, 3), np.uint8)
    path = str(tmp_path / 'img.png')
    Image.fromarray(img).save(path)
    inferencer = ImageClassificationInferencer(
        'nf-regnet-b1_3rdparty_in1k', pretrained=dst)
    scores = inferencer(path)[0]['pred_scores']
    data_cfg = timm.data.resolve_data_config({},
                                             model=theirs,
                                             use_test_size=True)
    x = timm.data.create_transform(**data_cfg)(Image.open(path))
    with torch.no_grad():
        ref = theirs(x[None]).softmax(-1)[0].numpy()
    np.testing.assert_allclose(scores, ref, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize('cls,kwargs', [('NFRegNet', dict(arch='b0')),
                                        ('NFResNet', dict(depth=26)),
                                        ('NFNet', dict(arch='eca-l0'))])
def test_family_backbones_freeze_checkpoint_and_tap(cls, kwargs):
    """frozen_stages, with_cp and out_indices as for the F-series."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    nets = [
        MODELS.build(
            dict(
                type=cls,
                frozen_stages=1,
                out_indices=(0, 1),
                with_cp=cp,
                **kwargs)).train() for cp in (False, True)
    ]
    nets[1].load_state_dict(nets[0].state_dict())
    grads = []
    for net in nets:
        outs = net(x)
        assert [o.shape[1] for o in outs] == net.out_channels[:2]
        sum(o.square().mean() for o in outs).backward()
        grads.append({n: p.grad for n, p in net.named_parameters()})
        assert not any(p.requires_grad for p in net.stem.parameters())
        assert not any(p.requires_grad for p in net.stages[0].parameters())
        assert net.stages[0].training is False
        # stages after the last output are not run: no gradient
        assert all(p.grad is None for p in net.stages[2].parameters())
    for name, g in grads[0].items():
        if g is not None:
            torch.testing.assert_close(grads[1][name], g)

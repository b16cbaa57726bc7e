"""Our model index in MMPretrain's ModelHub (list_models, get_model) and
get_model / ImageClassificationInferencer on our configs with local weights
(no network)."""
import os.path as osp

import numpy as np
import pytest
import torch
from helpers import REPO
from mmpretrain import ImageClassificationInferencer, get_model, list_models

import nfnet_mm  # noqa: F401
from nfnet_mm.hub import find_model_index, register_nfnet_models

DEMO = osp.join(REPO, 'configs', 'fashion_mnist',
                'nfnet-demo_1xb128_fashion-mnist.py')


def test_index_found_and_registration_idempotent():
    assert find_model_index() == osp.join(REPO, 'model-index.yml')
    before = list_models('nfnet*')
    assert register_nfnet_models() == find_model_index()
    assert list_models('nfnet*') == before


def test_list_models_names_only_models_with_weights():
    # DeepMind's released F0-F6 and timm's six; configs without weights are
    # not models
    assert set(list_models('nfnet*')) == {
        f'nfnet-f{v}_3rdparty_in1k'
        for v in range(7)
    } | {'nfnet-l0_3rdparty_in1k'}
    assert set(list_models('*nf-*')) | set(list_models('eca-nfnet*')) == {
        'eca-nfnet-l0_3rdparty_in1k', 'eca-nfnet-l1_3rdparty_in1k',
        'eca-nfnet-l2_3rdparty_in1k', 'nf-resnet50_3rdparty_in1k',
        'nf-regnet-b1_3rdparty_in1k'
    }
    # MMPretrain's own models are still there
    assert 'resnet50_8xb32_in1k' in list_models('resnet50*')


def test_demo_get_model_and_inferencer_with_local_weights(tmp_path):
    torch.manual_seed(0)
    model = get_model(DEMO)
    state = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in model.state_dict().items()
    }
    classes = [f'class{i}' for i in range(10)]
    path = str(tmp_path / 'demo.pth')
    torch.save(
        dict(state_dict=state, meta=dict(dataset_meta=dict(classes=classes))),
        path)

    loaded = get_model(DEMO, pretrained=path)
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v, state[k])
    assert loaded._dataset_meta['classes'] == classes

    inferencer = ImageClassificationInferencer(DEMO, pretrained=path)
    img = np.random.RandomState(0).randint(0, 256, (28, 28), dtype=np.uint8)
    result = inferencer(img)[0]
    assert result['pred_scores'].shape == (10, )
    assert result['pred_class'] in classes
    # same answer as the loaded model run by hand
    with torch.no_grad():
        x = torch.from_numpy(np.repeat(img[None], 3, 0)).float()[None]
        data = loaded.data_preprocessor(dict(inputs=x), False)
        scores = loaded(data['inputs'], mode='tensor').softmax(-1)[0]
    np.testing.assert_allclose(
        result['pred_scores'], scores.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_f0_name_builds_the_paper_model_and_loads_local_weights(tmp_path):
    # a small local checkpoint (classifier only; get_model loads non-strict)
    head = {
        'head.fc.weight': torch.full((1000, 3072), 0.5),
        'head.fc.bias': torch.arange(1000.)
    }
    path = str(tmp_path / 'f0_head.pth')
    torch.save(dict(state_dict=head), path)
    model = get_model('nfnet-f0_3rdparty_in1k', pretrained=path)
    # timm's dm_nfnet_f0 count (1000 classes)
    assert sum(p.numel() for p in model.parameters()) == 71_489_284
    torch.testing.assert_close(model.head.fc.bias, head['head.fc.bias'])
    # the F0 test protocol comes with the name
    test_pipeline = model._config.test_dataloader.dataset.pipeline
    assert [t['type'] for t in test_pipeline][1:3] == ['Resize', 'CenterCrop']
    assert test_pipeline[2]['crop_size'] == 256
    inferencer = ImageClassificationInferencer(model)
    img = np.random.RandomState(0).randint(
        0, 256, (300, 280, 3), dtype=np.uint8)
    result = inferencer(img)[0]
    # equal classifier rows, biases 0..999: the largest bias wins
    assert result['pred_label'] == 999

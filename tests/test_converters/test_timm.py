"""F0 sizes: timm and DeepMind weights agree; the F0 config exports to ONNX."""
import os.path as osp

import numpy as np
import pytest
import torch
from helpers import REPO

from nfnet_mm.converters import (convert_deepmind_params,
                                 convert_timm_state_dict)
from nfnet_mm.converters.deepmind import infer_depths

F0_CONFIG = osp.join(REPO, 'configs/nfnet/nfnet-f0_8xb128_in1k.py')


def _timm_to_deepmind(sd):
    """Re-express a timm dm_nfnet state dict in DeepMind's Haiku layout.

    Written from the two naming schemes: timm ``stem.convN`` is Haiku
    ``stem_conv{N-1}``; timm block ``stages.S.B`` is Haiku ``nf_block_k``
    (k counted over all blocks, the first one unnumbered) with timm
    ``conv1/conv2/conv2b/conv3/downsample.conv`` = Haiku
    ``conv0/conv1/conv1b/conv2/conv_shortcut``; timm's SE ``attn_last.fc1/2``
    are 1x1 convs = Haiku ``squeeze_excite/~/linear`` / ``linear_1``.
    Conv kernels OIHW -> HWIO, gains [O,1,1,1] -> [O], linears OI -> IO.
    """

    def np32(t):
        return t.detach().numpy().astype(np.float32)

    tree = {}
    blocks = sorted({
        tuple(int(i) for i in k.split('.')[1:3])
        for k in sd if k.startswith('stages.')
    })
    flat = {sb: k for k, sb in enumerate(blocks)}

    def conv(dst, src):
        tree[f'NFNet/~/{dst}'] = {
            'w': np32(sd[f'{src}.weight']).transpose(2, 3, 1, 0),
            'gain': np32(sd[f'{src}.gain']).reshape(-1),
            'bias': np32(sd[f'{src}.bias']),
        }

    def linear(dst, src, conv1x1=False):
        w = np32(sd[f'{src}.weight'])
        if conv1x1:
            w = w[:, :, 0, 0]
        tree[f'NFNet/~/{dst}'] = {'w': w.T, 'b': np32(sd[f'{src}.bias'])}

    for i in range(4):
        conv(f'stem_conv{i}', f'stem.conv{i + 1}')
    for (s, b), k in flat.items():
        name = 'nf_block' if k == 0 else f'nf_block_{k}'
        src = f'stages.{s}.{b}'
        for ours, theirs in (('conv0', 'conv1'), ('conv1', 'conv2'),
                             ('conv1b', 'conv2b'), ('conv2', 'conv3')):
            conv(f'{name}/~/{ours}', f'{src}.{theirs}')
        if f'{src}.downsample.conv.weight' in sd:
            conv(f'{name}/~/conv_shortcut', f'{src}.downsample.conv')
        linear(f'{name}/~/squeeze_excite/~/linear', f'{src}.attn_last.fc1',
               True)
        linear(f'{name}/~/squeeze_excite/~/linear_1', f'{src}.attn_last.fc2',
               True)
        tree[f'NFNet/~/{name}'] = {
            'skip_gain': np32(sd[f'{src}.skipinit_gain']).reshape(())
        }
    conv('final_conv', 'final_conv')
    linear('linear', 'head.fc')
    return tree


@pytest.mark.slow
def test_timm_and_deepmind_paths_agree_f0():
    timm = pytest.importorskip('timm')
    with torch.device('meta'):
        shapes = {
            k: v.shape
            for k, v in timm.create_model('dm_nfnet_f0').state_dict().items()
        }
    gen = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(shape, generator=gen) for k, shape in shapes.items()}
    from_timm = convert_timm_state_dict(sd, 'f0')
    tree = _timm_to_deepmind(sd)
    assert len(tree) == 94
    arch, depths = infer_depths(tree)
    assert (arch, depths) == ('f0', [1, 2, 6, 3])
    from_dm = convert_deepmind_params(tree, depths, 'f0')
    assert list(from_dm) and set(from_dm) == set(from_timm)
    for key, value in from_timm.items():
        assert from_dm[key].shape == value.shape, key
        assert torch.equal(from_dm[key], value), key


@pytest.mark.slow
def test_f0_config_exports_and_folds():
    pytest.importorskip('onnxruntime')
    if not osp.exists(F0_CONFIG):
        pytest.skip(f'{F0_CONFIG} not present')
    import tempfile

    from nfnet_mm import deploy
    with tempfile.TemporaryDirectory() as tmp:
        img = osp.join(REPO, 'demo', 'demo.png')
        report = deploy.export_and_check(
            F0_CONFIG,
            'none',
            osp.join(tmp, 'f0.onnx'),
            img=img,
            shape=(64, 64))
    assert report['max_abs_diff'] <= 1e-4
    ops = report['ops']
    # 4 stem + 12 blocks x 4 + 4 shortcuts + final conv
    assert ops['Conv'] == 4 + 12 * 4 + 4 + 1
    assert ops.get('Sqrt', 0) == ops.get('ReduceL2', 0) == ops.get('Clip',
                                                                   0) == 0
    assert ops.get('ReduceMean', 0) == 12  # SE squeeze only

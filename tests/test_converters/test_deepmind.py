"""The DeepMind converter: layout, strictness, safe unpickling."""
import io
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import (F0_ARCH, REPO, TINY_ARCH, classifier_cfg, deepmind_tree,
                     run_tool)

from nfnet_mm.converters import ConversionError, check_converted
from nfnet_mm.converters.deepmind import (convert_deepmind_file,
                                          convert_deepmind_params,
                                          infer_depths, load_deepmind_file)

NUM_CLASSES = 10
TOOL = 'tools/model_converters/deepmind_to_mmpretrain.py'


def _classifier(arch):
    from mmpretrain.registry import MODELS
    return MODELS.build(classifier_cfg(arch, NUM_CLASSES)).eval()


def _roundtrip(tmp_path, tree, protocol=4):
    path = tmp_path / 'params.pkl'
    path.write_bytes(pickle.dumps(tree, protocol))
    return load_deepmind_file(str(path))


@pytest.mark.parametrize('protocol', [2, 4, 5])
def test_tiny_tree_loads_strict(tmp_path, protocol):
    tree = deepmind_tree(TINY_ARCH, NUM_CLASSES)
    params = _roundtrip(tmp_path, tree, protocol)
    sd = convert_deepmind_params(params, TINY_ARCH['depths'])
    model = _classifier(TINY_ARCH)
    model.load_state_dict(sd, strict=True)
    # every module of the file went somewhere, every tensor of the model
    # came from the file
    n_file = sum(len(group) for group in tree.values())
    assert len(sd) == n_file == len(model.state_dict())
    # the 4 stem convs are checked by value below; spot-check a shortcut
    w = tree['NFNet/~/nf_block_1/~/conv_shortcut']['w']
    torch.testing.assert_close(
        model.backbone.stages[1][0].shortcut.conv.weight.detach(),
        torch.from_numpy(w.transpose(3, 2, 0, 1)))
    # stage 1 of the tiny arch keeps 32 channels at stride 1: no shortcut
    assert model.backbone.stages[0][0].shortcut is None


def _deepmind_ws(w, gain, eps=1e-4):
    """DeepMind's scaled WS on an HWIO kernel (plain numpy)."""
    mean = w.mean(axis=(0, 1, 2), keepdims=True)
    var = w.var(axis=(0, 1, 2), keepdims=True)
    fan_in = np.prod(w.shape[:-1])
    scale = gain / np.sqrt(np.maximum(var * fan_in, eps))
    return w * scale - mean * scale


def _nhwc_conv_same_s1(x, w, bias, groups):
    """Grouped HWIO convolution, stride 1, SAME padding, in numpy."""
    kh, kw, ig, out = w.shape
    og = out // groups
    xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    n, h, wd, _ = x.shape
    y = np.zeros((n, h, wd, out), np.float64)
    for g in range(groups):
        xs = xp[..., g * ig:(g + 1) * ig]
        ws = w[..., g * og:(g + 1) * og]
        for dy in range(kh):
            for dx in range(kw):
                y[..., g * og:(g + 1) * og] += np.einsum(
                    'nhwi,io->nhwo', xs[:, dy:dy + h, dx:dx + wd], ws[dy, dx])
    return y + bias


def test_grouped_conv_and_linear_values(tmp_path):
    tree = deepmind_tree(TINY_ARCH, NUM_CLASSES, seed=1)
    sd = convert_deepmind_params(
        _roundtrip(tmp_path, tree), TINY_ARCH['depths'])
    model = _classifier(TINY_ARCH)
    model.load_state_dict(sd, strict=True)

    # nf_block_2/~/conv1b: the second grouped 3x3 conv (stride 1) of stage
    # 3 (48 channels in 3 groups) -> stages.2.0.conv2b
    dm = tree['NFNet/~/nf_block_2/~/conv1b']
    mid = int(TINY_ARCH['widths'][2] * TINY_ARCH['bottleneck_ratio'])
    groups = mid // TINY_ARCH['group_width']
    assert groups > 1
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 7, 6, mid)).astype(np.float32)
    w_hat = _deepmind_ws(dm['w'].astype(np.float64), dm['gain'])
    conv = model.backbone.stages[2][0].conv2b
    # our conv may carry the preceding activation's constant gain gamma
    # (``input_scale``), which DeepMind applies in the activation
    scale = float(getattr(conv, 'input_scale', 1.0))
    ref = _nhwc_conv_same_s1(
        x.astype(np.float64) * scale, w_hat, dm['bias'], groups)
    ours = conv(torch.from_numpy(x).permute(0, 3, 1, 2))
    np.testing.assert_allclose(
        ours.detach().permute(0, 2, 3, 1).numpy(), ref, rtol=1e-4, atol=1e-4)

    # squeeze_excite/~/linear: IO kernel -> nn.Linear
    dm_fc = tree['NFNet/~/nf_block_2/~/squeeze_excite/~/linear']
    h = rng.standard_normal((3, dm_fc['w'].shape[0])).astype(np.float32)
    ours = model.backbone.stages[2][0].se.fc1(torch.from_numpy(h))
    np.testing.assert_allclose(
        ours.detach().numpy(),
        h @ dm_fc['w'] + dm_fc['b'],
        rtol=1e-5,
        atol=1e-5)
    # classifier
    dm_fc = tree['NFNet/~/linear']
    h = rng.standard_normal((3, dm_fc['w'].shape[0])).astype(np.float32)
    ours = F.linear(
        torch.from_numpy(h), sd['head.fc.weight'], sd['head.fc.bias'])
    np.testing.assert_allclose(
        ours.numpy(), h @ dm_fc['w'] + dm_fc['b'], rtol=1e-5, atol=1e-5)
    # skip gain scalar and a gain vector stay as they are
    assert sd['backbone.stages.3.0.skip_gain'].shape == ()
    assert float(sd['backbone.stages.3.0.skip_gain']) == pytest.approx(
        float(tree['NFNet/~/nf_block_3']['skip_gain']))
    np.testing.assert_array_equal(sd['backbone.final_conv.gain'].numpy(),
                                  tree['NFNet/~/final_conv']['gain'])


def test_unknown_module_and_param_are_named():
    tree = deepmind_tree(TINY_ARCH, NUM_CLASSES)
    tree['NFNet/~/nf_block_2/~/conv3'] = tree['NFNet/~/nf_block_2/~/conv2']
    with pytest.raises(ConversionError, match=r'nf_block_2/~/conv3'):
        convert_deepmind_params(tree, TINY_ARCH['depths'])
    tree = deepmind_tree(TINY_ARCH, NUM_CLASSES)
    tree['NFNet/~/final_conv']['scale'] = np.ones(3, np.float32)
    with pytest.raises(ConversionError, match='scale'):
        convert_deepmind_params(tree, TINY_ARCH['depths'])


def test_missing_module_is_named():
    tree = deepmind_tree(TINY_ARCH, NUM_CLASSES)
    del tree['NFNet/~/nf_block_2/~/conv1b']
    with pytest.raises(ConversionError, match=r'nf_block_2/~/conv1b'):
        convert_deepmind_params(tree, TINY_ARCH['depths'])
    tree = deepmind_tree(TINY_ARCH, NUM_CLASSES)
    del tree['NFNet/~/nf_block_3']
    with pytest.raises(ConversionError, match=r'nf_block_3:skip_gain'):
        convert_deepmind_params(tree, TINY_ARCH['depths'])


def test_wrong_depths_are_refused():
    tree = deepmind_tree(TINY_ARCH, NUM_CLASSES)
    with pytest.raises(ConversionError, match=r'depths \[1, 2, 1, 1\]'):
        convert_deepmind_params(tree, [1, 2, 1, 1])
    # same count, other split: a shortcut lands in a non-first block
    arch = dict(TINY_ARCH, depths=[1, 2, 1, 1])
    tree = deepmind_tree(arch, NUM_CLASSES)
    with pytest.raises(ConversionError, match='shortcut'):
        convert_deepmind_params(tree, [1, 1, 2, 1])
    with pytest.raises(ConversionError, match='--arch NAME or --depths'):
        infer_depths(tree)


@pytest.mark.slow
def test_f0_shapes_and_inferred_arch(tmp_path):
    tree = deepmind_tree(F0_ARCH, 1000, empty=True)
    assert len(tree) == 94  # 94 Haiku modules in DeepMind's F0 file
    assert infer_depths(tree) == ('f0', [1, 2, 6, 3])
    # keys and shapes checked against NFNet('f0')
    sd = convert_deepmind_params(tree, [1, 2, 6, 3], 'f0')
    assert sum(v.numel() for v in sd.values()) == 71_489_284  # timm's count
    del sd['backbone.stages.2.3.conv2b.gain']
    with pytest.raises(ConversionError, match=r'stages\.2\.3\.conv2b\.gain'):
        check_converted(sd, 'f0')


def test_cli_writes_checkpoint(tmp_path, capsys):
    tree = deepmind_tree(TINY_ARCH, NUM_CLASSES)
    src = tmp_path / 'tiny_haiku.npz'
    src.write_bytes(pickle.dumps(tree))
    dst = tmp_path / 'out' / 'tiny.pth'
    assert run_tool(TOOL, src, dst, '--depths', '1', '1', '1', '1') == 0
    ckpt = torch.load(dst, weights_only=True)
    assert ckpt['meta']['depths'] == [1, 1, 1, 1]
    _classifier(TINY_ARCH).load_state_dict(ckpt['state_dict'], strict=True)
    assert 'Converted 94 tensors' in capsys.readouterr().out
    dst.unlink()
    assert run_tool(TOOL, src, dst, '--arch', 'f9') == 1
    assert "valid: ['f0'" in capsys.readouterr().err
    assert not dst.exists()


def test_real_npz_archive_is_accepted(tmp_path):
    tree = deepmind_tree(TINY_ARCH, NUM_CLASSES)
    buf = io.BytesIO()
    np.savez(buf, **{
        f'{m}/{p}': a
        for m, g in tree.items()
        for p, a in g.items()
    })
    (tmp_path / 'params.npz').write_bytes(buf.getvalue())
    params = load_deepmind_file(str(tmp_path / 'params.npz'))
    assert params.keys() == tree.keys()
    for module, group in tree.items():
        for name, value in group.items():
            np.testing.assert_array_equal(params[module][name], value)


class _Payload:
    """Unpickling this calls ``open(path, 'w')``: code runs on load."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_pickle_with_code_is_refused_and_nothing_runs(tmp_path):
    sentinel = tmp_path / 'pwned'
    tree = deepmind_tree(TINY_ARCH, NUM_CLASSES)
    tree['NFNet/~/final_conv']['w'] = _Payload(str(sentinel))
    data = pickle.dumps(tree)
    with pytest.raises(
            ConversionError,
            match=r"params.pkl holds objects .*\['\S*open'\]"):
        _roundtrip(tmp_path, tree)
    assert not sentinel.exists()
    # control: a plain unpickler does run it
    pickle.loads(data).get('NFNet/~/final_conv')['w'].close()
    assert sentinel.exists()


def test_non_array_objects_are_refused(tmp_path):
    tree = deepmind_tree(TINY_ARCH, NUM_CLASSES)
    tree['NFNet/~/final_conv']['w'] = {1, 2}  # a set needs no global
    with pytest.raises(ConversionError, match=r'final_conv:w is a set'):
        _roundtrip(tmp_path, tree)
    import datetime
    tree['NFNet/~/final_conv']['w'] = datetime.date(2021, 2, 11)
    with pytest.raises(ConversionError, match=r"\['datetime.date'\]"):
        _roundtrip(tmp_path, tree)
    tree['NFNet/~/final_conv']['w'] = np.array(['a', 1], dtype=object)
    with pytest.raises(ConversionError, match=r'\(object\), not a float'):
        _roundtrip(tmp_path, tree)
    with pytest.raises(ConversionError, match='list, not a dict'):
        _roundtrip(tmp_path, [np.zeros(3)])


DEMO_CONFIG = os.path.join(
    REPO, 'configs/fashion_mnist/nfnet-demo_1xb128_fashion-mnist.py')


@pytest.mark.slow
def test_tools_test_evaluates_converted_weights(tmp_path):
    """tools/test.py scores the converted weights (also its EMA copy)."""
    import subprocess
    import sys

    from mmengine.config import Config
    if not os.path.exists(DEMO_CONFIG):
        pytest.skip(f'{DEMO_CONFIG} not present')
    cfg = Config.fromfile(DEMO_CONFIG)
    data_root = cfg.test_dataloader.dataset.get('data_root', '')
    if not os.path.isdir(data_root):
        pytest.skip(f'Fashion-MNIST not found at {data_root!r}')
    arch = cfg.model.backbone.arch.to_dict()
    src, dst = tmp_path / 'demo_haiku.npz', tmp_path / 'demo.pth'
    src.write_bytes(pickle.dumps(deepmind_tree(arch, NUM_CLASSES, seed=5)))
    convert_deepmind_file(str(src), str(dst), depths=arch['depths'])
    out = subprocess.run([
        sys.executable,
        os.path.join(REPO, 'tools/test.py'), DEMO_CONFIG,
        str(dst), '--work-dir',
        str(tmp_path / 'work'), '--out',
        str(tmp_path / 'preds.pkl'), '--out-item', 'pred', '--cfg-options',
        'test_dataloader.dataset.indices=16', 'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False'
    ],
                         cwd=REPO,
                         capture_output=True,
                         text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    with open(tmp_path / 'preds.pkl', 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 16

    # the same weights, evaluated here on the same samples
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS, MODELS

    import nfnet_mm  # noqa: F401
    init_default_scope('mmpretrain')
    dataset_cfg = cfg.test_dataloader.dataset.copy()
    dataset_cfg['indices'] = 16
    dataset = DATASETS.build(dataset_cfg)
    model_cfg = cfg.model.copy()
    model_cfg['data_preprocessor'] = cfg.data_preprocessor
    model = MODELS.build(model_cfg).eval()
    model.load_state_dict(torch.load(dst)['state_dict'], strict=True)
    with torch.no_grad():
        ours = model.test_step(pseudo_collate([dataset[i] for i in range(16)]))
    for theirs, mine in zip(preds, ours):
        torch.testing.assert_close(
            torch.as_tensor(theirs['pred_score']),
            mine.pred_score,
            rtol=1e-4,
            atol=1e-6)

"""NFNet deploy: WS folding, ONNX export, torch.compile."""
import pytest
import torch
from helpers import TINY_DEEPER_DIFF, TINY_DIFF, randomize_

import nfnet_mm  # noqa: F401
from nfnet_mm.models.backbones.nfnet import NFNet


def test_switch_to_deploy_tiny_and_roundtrip():
    torch.manual_seed(0)
    m = randomize_(NFNet(TINY_DEEPER_DIFF, out_indices=(0, 1, 2, 3))).eval()
    x = torch.randn(2, 3, 47, 50)
    with torch.no_grad():
        ref = m(x)
        m.switch_to_deploy()
        out = m(x)
    for a, b in zip(ref, out):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
    sd = m.state_dict()
    assert not any(k.endswith('.gain') and 'skip' not in k for k in sd)
    other = NFNet(TINY_DEEPER_DIFF, out_indices=(0, 1, 2, 3))
    other.switch_to_deploy()
    other.load_state_dict(sd, strict=True)
    with torch.no_grad():
        for a, b in zip(ref, other.eval()(x)):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_switch_to_deploy_f0():
    torch.manual_seed(0)
    m = randomize_(NFNet('f0'), trained_like=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = m(x)[0]
        m.switch_to_deploy()
        out = m(x)[0]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize('deploy', [False, True])
def test_onnx_export_static_shape(tmp_path, deploy):
    ort = pytest.importorskip('onnxruntime')
    pytest.importorskip('onnx')
    torch.manual_seed(0)
    m = randomize_(NFNet(TINY_DIFF, out_indices=(0, 1, 2, 3))).eval()
    if deploy:
        m.switch_to_deploy()
    x = torch.randn(1, 3, 50, 63)  # even and odd sizes: asymmetric pads
    path = str(tmp_path / 'nfnet.onnx')
    torch.onnx.export(
        m, (x, ), path, dynamo=False, opset_version=17, input_names=['x'])
    sess = ort.InferenceSession(path)
    outs = sess.run(None, {'x': x.numpy()})
    with torch.no_grad():
        ref = m(x)
    for o, r in zip(outs, ref):
        torch.testing.assert_close(
            torch.from_numpy(o), r, atol=1e-4, rtol=1e-4)


def test_torch_compile_fullgraph():
    """No graph breaks (SAME pads are plain Python ints of the shape)."""
    torch._dynamo.reset()
    m = randomize_(NFNet(TINY_DIFF)).eval()
    x = torch.randn(1, 3, 40, 41)
    compiled = torch.compile(m, backend='eager', fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x)[0], m(x)[0])

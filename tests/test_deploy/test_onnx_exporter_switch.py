"""nfnet_mm.utils.onnx_export: the TorchScript exporter, on request."""
import subprocess
import sys
import textwrap

import pytest
import torch

from nfnet_mm.utils import onnx_export

from deploy_helpers import REPO


@pytest.fixture
def fake_export(monkeypatch):
    """Replace torch.onnx.export by a recorder with a ``dynamo`` argument."""
    calls = []

    def export(model, args=(), f=None, *, dynamo: bool = True, **kwargs):
        calls.append(dynamo)

    onnx_export.restore_onnx_exporter()
    monkeypatch.setattr(torch.onnx, 'export', export)
    yield calls
    onnx_export.restore_onnx_exporter()


def test_wrapper_defaults_to_torchscript(fake_export):
    assert not onnx_export.is_torchscript_exporter_default()
    torch.onnx.export(None, (), 'x.onnx')
    assert onnx_export.use_torchscript_onnx_exporter()
    assert onnx_export.use_torchscript_onnx_exporter()  # idempotent
    assert onnx_export.is_torchscript_exporter_default()
    torch.onnx.export(None, (), 'x.onnx')
    torch.onnx.export(None, (), 'x.onnx', dynamo=True)  # explicit: kept
    assert fake_export == [True, False, True]
    onnx_export.restore_onnx_exporter()
    torch.onnx.export(None, (), 'x.onnx')
    assert fake_export[-1] is True


def test_context_manager_restores(fake_export):
    with onnx_export.torchscript_onnx_exporter():
        torch.onnx.export(None, (), 'x.onnx')
    torch.onnx.export(None, (), 'x.onnx')
    assert fake_export == [False, True]


_CHILD = textwrap.dedent('''
    import multiprocessing as mp
    import os
    import sys


    def child(path, queue):
        # a fresh (spawned) interpreter, as MMDeploy's export subprocess:
        # it imports nfnet_mm (via custom_imports) and calls export without
        # choosing an exporter
        import torch
        import nfnet_mm  # noqa: F401
        torch.onnx.export(torch.nn.Linear(3, 2).eval(), (torch.ones(1, 3),),
                          path)
        import onnx
        queue.put([n.op_type for n in onnx.load(path).graph.node])


    if __name__ == '__main__':
        # importing nfnet_mm patches nothing unless asked to
        os.environ.pop('NFNET_MM_ONNX_EXPORTER', None)
        import torch
        import nfnet_mm  # noqa: F401
        print(getattr(torch.onnx.export, '_nfnet_mm_torchscript_default',
                      False))
        os.environ['NFNET_MM_ONNX_EXPORTER'] = sys.argv[2]
        ctx = mp.get_context('spawn')
        queue = ctx.Queue()
        proc = ctx.Process(target=child, args=(sys.argv[1], queue))
        proc.start()
        proc.join()
        print(queue.get(timeout=5) if proc.exitcode == 0 else 'FAILED')
''')


def test_env_request_reaches_spawned_process(tmp_path):
    script = tmp_path / 'spawn_export.py'
    script.write_text(_CHILD)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / 'lin.onnx'),
         'torchscript'],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ['False', "['Gemm']"]


def test_env_values(monkeypatch, fake_export):
    monkeypatch.setenv(onnx_export.ONNX_EXPORTER_ENV, 'dynamo!')
    with pytest.raises(ValueError, match=r"NFNET_MM_ONNX_EXPORTER='dynamo!'"
                       r".*'torchscript'"):
        onnx_export._apply_env_request()
    monkeypatch.setenv(onnx_export.ONNX_EXPORTER_ENV, 'default')
    onnx_export._apply_env_request()
    assert not onnx_export.is_torchscript_exporter_default()
    monkeypatch.setenv(onnx_export.ONNX_EXPORTER_ENV, 'TorchScript')
    onnx_export._apply_env_request()
    assert onnx_export.is_torchscript_exporter_default()

"""Packaging: a wheel carries configs and model index; the pytest set-up."""
import ast
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import REPO

_LIST_AND_BUILD = '''
import os.path as osp
import shutil
import torch
import nfnet_mm
from mmpretrain import get_model, list_models
from mmpretrain.apis.model import ModelHub
print(osp.dirname(nfnet_mm.__file__))
print(' '.join(list_models('nfnet*') + list_models('*nf-*') +
               list_models('eca-nfnet*')))
if list_models('nfnet*'):
    print(ModelHub.get('nfnet-f0_3rdparty_in1k').config.filename)
    with torch.device('meta'):
        model = get_model('nfnet-f0_3rdparty_in1k')
    print(sum(p.numel() for p in model.parameters()))
'''


@pytest.mark.slow
def test_wheel_lists_and_builds_models_from_its_model_index(tmp_path):
    wheels, target = tmp_path / 'wheels', tmp_path / 'site'

    def pip(*args):
        out = subprocess.run([sys.executable, '-m', 'pip', '-q', *args],
                             capture_output=True,
                             text=True,
                             timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]

    # build from a copy: setuptools would reuse a stale build/ in the repo
    src = tmp_path / 'src'
    src.mkdir()
    for name in ('setup.py', 'MANIFEST.in', 'README.md', 'model-index.yml'):
        shutil.copy(osp.join(REPO, name), src / name)
    for name in ('nfnet_mm', 'configs'):
        shutil.copytree(
            osp.join(REPO, name),
            src / name,
            ignore=shutil.ignore_patterns('__pycache__'))
    pip('wheel', '--no-deps', '--no-build-isolation', '-w', str(wheels),
        str(src))
    pip('install', '--no-deps', '--target', str(target),
        *map(str, wheels.glob('nfnet_mm-*.whl')))
    pkg = target / 'nfnet_mm'
    # the wheel is the product: no lab, no tests, no tools
    assert sorted(p.name for p in target.iterdir()
                  if not p.name.endswith('-info')) == ['nfnet_mm']
    modules = {p.relative_to(pkg).as_posix() for p in pkg.rglob('*.py')}
    assert not [
        m for m in modules
        if m.split('/')[0] in ('benchmarks', 'analysis', 'lab', 'tests')
    ], modules
    assert (pkg / '.mim' / 'model-index.yml').is_file()
    assert (pkg / '.mim' / 'configs' / 'nfnet' / 'metafile.yml').is_file()

    def run():  # the repository is neither the cwd nor on the path
        env = dict(os.environ, PYTHONPATH=str(target))
        env.pop('NFNET_MM_MODEL_INDEX', None)
        out = subprocess.run([sys.executable, '-c', _LIST_AND_BUILD],
                             cwd=str(tmp_path),
                             env=env,
                             capture_output=True,
                             text=True,
                             timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout.splitlines(), out.stderr

    lines, _ = run()
    assert lines[0] == str(pkg)
    names = set(lines[1].split())
    # DeepMind's F0-F6 and timm's six, from the wheel's own metafiles
    timm_six = {
        f'{n}_3rdparty_in1k'
        for n in ('nfnet-l0', 'eca-nfnet-l0', 'eca-nfnet-l1', 'eca-nfnet-l2',
                  'nf-resnet50', 'nf-regnet-b1')
    }
    assert {f'nfnet-f{v}_3rdparty_in1k'
            for v in range(7)} | timm_six == names
    # the config comes from the wheel, and builds the repository's model
    assert lines[2].startswith(str(pkg / '.mim' / 'configs'))
    from mmpretrain import get_model

    import nfnet_mm  # noqa: F401
    with torch.device('meta'):
        repo_model = get_model(
            osp.join(REPO, 'configs/nfnet/nfnet-f0_8xb128_in1k.py'))
    assert int(lines[-1]) == sum(p.numel() for p in repo_model.parameters())

    # without an index the import registers nothing and says nothing
    shutil.rmtree(pkg / '.mim')
    lines, stderr = run()
    assert lines[1:] == [''] and 'model-index' not in stderr


def test_asking_for_a_missing_index_names_the_places(monkeypatch):
    from nfnet_mm import hub
    monkeypatch.setattr(hub, 'find_model_index', lambda: None)
    with pytest.raises(
            FileNotFoundError, match=r'NFNET_MM_MODEL_INDEX.*nfnet_mm/\.mim'):
        hub.register_nfnet_models()


def test_pytest_config_registers_markers_and_durations(pytestconfig):
    markers = [line.split(':')[0] for line in pytestconfig.getini('markers')]
    assert {'slow', 'cuda'} <= set(markers)
    assert '--durations=15' in pytestconfig.getini('addopts')


@pytest.mark.cuda
def test_cuda_marked_tests_run_only_with_cuda():
    # skipped by conftest.py (the repository root) when there is no CUDA device
    assert torch.cuda.is_available()
    assert torch.ones(2, device='cuda').sum().item() == 2


def _imports(path):
    """Every module ``path`` imports, function-local imports included, with
    relative imports resolved against its package."""
    package = osp.relpath(osp.dirname(path), REPO).replace(os.sep, '.')
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split('.')
            base = base[:len(base) - node.level + 1] if node.level else []
            yield '.'.join(base + ([node.module] if node.module else []))


def test_product_imports_neither_the_lab_nor_timm_and_models_not_engine():
    found = []
    for folder, _, files in os.walk(osp.join(REPO, 'nfnet_mm')):
        for name in files:
            if not name.endswith('.py'):
                continue
            path = osp.join(folder, name)
            module = osp.relpath(path, REPO)
            for imported in _imports(path):
                top = imported.split('.')[0]
                if top in ('lab', 'timm', 'tests') or (
                        module.startswith(osp.join('nfnet_mm', 'models'))
                        and imported.startswith('nfnet_mm.engine')):
                    found.append(f'{module}: {imported}')
    assert not found

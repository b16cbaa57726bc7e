"""Install nfnet_mm: ``pip install -e .`` (README: ``bash tools/install.sh``).

Extras:

* ``mmcv-lite``: mmcv without compiled ops (2.1.0: MMDet and MMSeg refuse
  2.2). Leave it out when a full ``mmcv`` (with ops, e.g. from ``mim install
  mmcv``) is installed: both distributions provide the same ``mmcv`` package.
* ``tests``: what ``python -m pytest tests lab/tests`` needs.
* ``export``: ONNX export and checking, and what MMDeploy 1.3.1 needs beside
  itself. MMDeploy itself must be installed with ``pip install --no-deps
  mmdeploy==1.3.1``: it pins ``protobuf<=3.20.2``, which onnx refuses, and its
  onnxruntime route never imports protobuf (``tools/install.sh`` does this
  when ``export`` is selected).
* ``downstream``: MMDetection 3.3.0 and MMSegmentation 1.2.2 (they accept mmcv
  < 2.2; ``mmseg.utils`` imports ``ftfy`` and ``regex`` without declaring
  them).
* ``lint``: flake8, isort and yapf at the versions the code is formatted
  with, and pre-commit (``.pre-commit-config.yaml``; its hooks are local).

A wheel (and a non-editable install) carries ``configs/`` and
``model-index.yml`` in ``nfnet_mm/.mim/``, where OpenMMLab packages keep them,
so that ``mim`` and ``mmpretrain.get_model``/``list_models`` know our models
there too (see ``nfnet_mm/hub.py``). An editable install reads them from the
repository.
"""
import os.path as osp
from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

MIM_FILES = ('configs', 'model-index.yml')


class BuildPyWithMim(build_py):
    """``build_py`` that also copies :data:`MIM_FILES` to ``nfnet_mm/.mim``."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        here = osp.dirname(osp.abspath(__file__))
        mim = osp.join(self.build_lib, 'nfnet_mm', '.mim')
        for name in MIM_FILES:
            src, dst = osp.join(here, name), osp.join(mim, name)
            if osp.isdir(src):
                self.copy_tree(src, dst)
            else:
                self.mkpath(mim)
                self.copy_file(src, dst)


def get_version():
    namespace = {}
    with open(osp.join(osp.dirname(__file__), 'nfnet_mm', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def get_long_description():
    readme = osp.join(osp.dirname(__file__), 'README.md')
    if not osp.isfile(readme):
        return ''
    with open(readme, encoding='utf-8') as f:
        return f.read()


EXTRAS = {
    'mmcv-lite': ['mmcv-lite==2.1.0'],
    'tests': [
        'pytest', 'timm', 'safetensors', 'Pillow', 'scipy', 'flake8==7.1.1',
        'isort==5.13.2'
    ],
    'export': ['onnx', 'onnxruntime', 'aenum', 'prettytable'],
    'downstream': ['mmdet==3.3.0', 'mmsegmentation==1.2.2', 'ftfy', 'regex'],
    'lint': [
        'flake8==7.1.1', 'isort==5.13.2', 'yapf==0.40.2', 'pre-commit',
        'pre-commit-hooks'
    ],
}
# Installed with --no-deps next to the 'export' extra (see above).
MMDEPLOY = 'mmdeploy==1.3.1'

setup(
    name='nfnet_mm',
    version=get_version(),
    description='NFNets (Brock et al., ICML 2021) for OpenMMLab',
    long_description=get_long_description(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['nfnet_mm', 'nfnet_mm.*']),
    python_requires='>=3.9',
    install_requires=[
        'torch>=2.1',
        'torchvision',
        'numpy',
        'mmengine>=0.10.4,<1.0',
        'mmpretrain>=1.2,<2.0',
        # mmengine 0.10.x imports pkg_resources (removed in setuptools 82);
        # recent torch needs setuptools >= 77.0.3.
        'setuptools>=77.0.3,<82',
    ],
    extras_require=EXTRAS,
    include_package_data=True,
    cmdclass={'build_py': BuildPyWithMim},
    zip_safe=False,
)

"""Install nfnet_mm: ``pip install -e .`` (README: ``bash tools/install.sh``).

Extras:

* ``mmcv-lite``: mmcv without compiled ops (2.1.0: MMDet and MMSeg refuse 2.2). Leave it
  out when a full ``mmcv`` (with ops, e.g. from ``mim install mmcv``) is installed:
  both distributions provide the same ``mmcv`` package.
* ``tests``: what ``python -m pytest tests`` needs.
* ``export``: ONNX export and checking, and what MMDeploy 1.3.1 needs beside itself.
  MMDeploy itself must be installed with ``pip install --no-deps mmdeploy==1.3.1``: it
  pins ``protobuf<=3.20.2``, which onnx refuses, and its onnxruntime route never
  imports protobuf (``tools/install.sh`` does this when ``export`` is selected).
* ``downstream``: MMDetection 3.3.0 and MMSegmentation 1.2.2 (they accept mmcv < 2.2;
  ``mmseg.utils`` imports ``ftfy`` and ``regex`` without declaring them).
"""
import os.path as osp

from setuptools import find_packages, setup


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
    'tests': ['pytest', 'timm', 'safetensors', 'Pillow'],
    'export': ['onnx', 'onnxruntime', 'aenum', 'prettytable'],
    'downstream': ['mmdet==3.3.0', 'mmsegmentation==1.2.2', 'ftfy', 'regex'],
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
    zip_safe=False,
)

"""Install nfnet_mm: ``pip install -e .`` (see README for the extras)."""
import os.path as osp

from setuptools import find_packages, setup


def get_version():
    namespace = {}
    with open(osp.join(osp.dirname(__file__), 'nfnet_mm', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='nfnet_mm',
    version=get_version(),
    description='NFNets (Brock et al., ICML 2021) for OpenMMLab',
    packages=find_packages(include=['nfnet_mm', 'nfnet_mm.*']),
    python_requires='>=3.9',
    install_requires=[
        'torch>=2.1',
        'torchvision',
        'mmengine>=0.10.4,<1.0',
        'mmpretrain>=1.2,<2.0',
        # mmengine 0.10.7 imports pkg_resources (gone in setuptools 82);
        # torch needs setuptools >= 77.0.3.
        'setuptools>=77.0.3,<82',
    ],
    extras_require={
        # mmcv without compiled ops; 2.2 is refused by MMDet and MMSeg.
        'mmcv-lite': ['mmcv-lite==2.1.0'],
        'tests': ['pytest', 'timm', 'safetensors'],
        'export': ['onnx', 'onnxruntime'],
    },
    include_package_data=True,
    zip_safe=False,
)

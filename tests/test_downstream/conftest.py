"""Make ``mmdet.models`` / ``mmseg.models`` importable on mmcv-lite, for these
tests only.

mmcv-lite has no compiled ``mmcv._ext``; when it is missing we register the
test-only stand-in :mod:`mmcv_ext_standin` of this folder as ``mmcv._ext``
(nms and average RoIAlign routed to torchvision, every other op raising
``NotImplementedError``). With full mmcv installed nothing is changed.
"""
import importlib.util
import os.path as osp
import sys

STANDIN_PATH = osp.join(
    osp.dirname(osp.abspath(__file__)), 'mmcv_ext_standin.py')


def _install_mmcv_ext_standin() -> None:
    try:
        import mmcv
    except ImportError:  # no mmcv at all: the tests skip themselves
        return
    if 'mmcv._ext' in sys.modules:
        return
    if importlib.util.find_spec('mmcv._ext') is not None:
        return  # full mmcv: use the real kernels
    spec = importlib.util.spec_from_file_location('mmcv._ext', STANDIN_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules['mmcv._ext'] = module
    mmcv._ext = module


_install_mmcv_ext_standin()

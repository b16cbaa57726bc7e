"""Fashion-MNIST read from local idx files (Debian's dataset-fashion-mnist)."""
import os
import os.path as osp
import warnings
from typing import List, Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.datasets import FashionMNIST
from mmpretrain.datasets.mnist import read_sn3_pascalvincent_tensor
from mmpretrain.registry import DATASETS, TRANSFORMS

__all__ = ['FashionMNISTIdx', 'GrayToRGB', 'DEFAULT_FASHION_MNIST_ROOT']

#: Where Debian's ``dataset-fashion-mnist`` package puts the files.
DEFAULT_FASHION_MNIST_ROOT = '/usr/share/datasets/fashion-mnist'
_APT = ('`apt-get install dataset-fashion-mnist` (into '
        f'{DEFAULT_FASHION_MNIST_ROOT}, the default data_root)')


def _read_idx(path: str) -> np.ndarray:
    """MMPretrain's idx reader; a truncated or corrupt file is one error."""
    try:
        with warnings.catch_warnings():  # it wraps read-only bytes, no copy
            warnings.filterwarnings('ignore',
                                    'The given NumPy array is not writable')
            return read_sn3_pascalvincent_tensor(path, strict=True).numpy()
    except PermissionError:
        raise
    except (OSError, EOFError, AssertionError, KeyError, RuntimeError,
            ValueError) as err:
        raise ValueError(
            f'{path} is truncated or corrupt, not a readable idx file '
            f'({type(err).__name__}: {err}). Reinstall it (`apt-get install '
            '--reinstall dataset-fashion-mnist`), or delete it and download '
            'it again (download=True).') from None


@DATASETS.register_module()
class FashionMNISTIdx(FashionMNIST):
    """Fashion-MNIST from local idx files (``.gz`` or uncompressed).

    Unlike MMPretrain's ``FashionMNIST`` (uncompressed files only), it reads
    the ``.gz`` files where they are and downloads only if asked. Samples are
    ``dict(img=<28 x 28 uint8>, gt_label=<int64>)``; use :class:`GrayToRGB`
    for ``in_channels=3``.

    Args:
        data_root (str): The folder holding the files. Defaults to
            :data:`DEFAULT_FASHION_MNIST_ROOT` (Debian's).
        split (str, optional): ``'train'`` or ``'test'``. Defaults to None
            (``'test'`` if ``test_mode``, else ``'train'``).
        download (bool): Download the files into ``data_root`` when absent.
            Defaults to False (MMPretrain's default is True).
        test_mode (bool): As in :class:`mmengine.dataset.BaseDataset`.
            Defaults to False.
        **kwargs: Other arguments of MMPretrain's ``FashionMNIST``.
    """

    def __init__(self,
                 data_root: str = DEFAULT_FASHION_MNIST_ROOT,
                 split: Optional[str] = None,
                 download: bool = False,
                 test_mode: bool = False,
                 **kwargs):
        if split is None:
            split = 'test' if test_mode else 'train'
        if split not in ('train', 'test'):
            raise ValueError(
                "FashionMNISTIdx split must be 'train' or 'test', got "
                f"{split!r}")
        # MMPretrain 1.2's MNIST picks the files from test_mode, not split.
        self._idx_split = split
        super().__init__(
            data_root=data_root,
            split=split,
            download=download,
            test_mode=test_mode,
            **kwargs)

    def _find(self, filename: str) -> Optional[str]:
        """The path of ``filename`` or of its uncompressed form, or None."""
        for name in (filename, filename[:-3]):
            path = osp.join(self.data_prefix['root'], name)
            if osp.isfile(path):
                return path
        return None

    def _paths(self) -> List[str]:
        """The split's image and label files, or one error naming the fix."""
        root = osp.normpath(self.data_prefix['root'])
        names = [
            item[0] for item in (self.train_list if self._idx_split ==
                                 'train' else self.test_list)
        ]
        if not osp.isdir(root):
            problem = 'does not exist' if not osp.exists(
                root) else 'is not a folder'
        elif not os.access(root, os.R_OK | os.X_OK):
            problem = 'cannot be read (permissions)'
        else:
            paths = [self._find(name) for name in names]
            if None not in paths:
                return paths
            problem = 'lacks ' + ', '.join(
                n for n, p in zip(names, paths) if p is None)
        raise FileNotFoundError(
            f'Fashion-MNIST data_root {root!r} {problem}; the '
            f'{self._idx_split} split needs {names} (or the same names '
            f'without .gz). Install them with {_APT}, or pass download=True '
            'with a writable data_root.')

    def load_data_list(self) -> List[dict]:
        """Load the split's samples, downloading only if asked and absent."""
        try:
            paths = self._paths()
        except FileNotFoundError:
            if not self.download:
                raise
            # MMPretrain's download path picks the files by test_mode
            self.test_mode = self._idx_split == 'test'
            try:
                return super().load_data_list()
            except (OSError, RuntimeError, AssertionError) as err:
                root = osp.normpath(self.data_prefix['root'])
                raise RuntimeError(
                    f'Downloading Fashion-MNIST from {self.url_prefix} into '
                    f'{root!r} failed ({type(err).__name__}: {err}). Install '
                    f'the files with {_APT} instead.') from None
        images, labels = _read_idx(paths[0]), _read_idx(paths[1])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f'Inconsistent Fashion-MNIST files: images {images.shape} '
                f'from {paths[0]}, labels {labels.shape} from {paths[1]}')
        return [
            dict(img=img, gt_label=np.array(label, dtype=np.int64))
            for img, label in zip(images, labels)
        ]


@TRANSFORMS.register_module()
class GrayToRGB(BaseTransform):
    """Repeat a grey image (``H x W`` or ``H x W x 1``) to three channels.

    Three-channel images pass unchanged. Modifies ``img`` and ``img_shape``.
    """

    def transform(self, results: dict) -> dict:
        """Repeat ``results['img']`` to ``H x W x 3``."""
        img = results['img']
        if img.ndim == 2:
            img = img[..., None]
        if img.ndim != 3 or img.shape[-1] not in (1, 3):
            raise ValueError(
                'GrayToRGB expects an H x W or H x W x 1 (or x 3) image, got '
                f'shape {img.shape}')
        if img.shape[-1] == 1:
            img = np.repeat(img, 3, axis=-1)
        results['img'] = np.ascontiguousarray(img)
        results['img_shape'] = img.shape[:2]
        return results

"""Fashion-MNIST read from local idx ``.gz`` files.

Debian's ``dataset-fashion-mnist`` package installs the four compressed idx
files of Fashion-MNIST into ``/usr/share/datasets/fashion-mnist``. MMPretrain's
``FashionMNIST`` only reads the *uncompressed* files and downloads them when
absent; :class:`FashionMNISTIdx` reads the ``.gz`` (or uncompressed) files
where they are, with MMPretrain's idx reader, and downloads only when asked
(``download=True``).

Images are grey ``H x W`` uint8 arrays; :class:`GrayToRGB` (a pipeline
transform) repeats them to three channels for models with ``in_channels=3``.
"""
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
    """MMPretrain's idx reader, with an error naming a truncated or corrupt
    file."""
    try:
        with warnings.catch_warnings(
        ):  # it wraps the read-only bytes without copy
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
            'it '
            'again (download=True).') from None


@DATASETS.register_module()
class FashionMNISTIdx(FashionMNIST):
    """Fashion-MNIST from local idx files (``.gz`` or uncompressed).

    Reads ``train-images-idx3-ubyte[.gz]`` / ``train-labels-idx1-ubyte[.gz]``
    (60,000 samples) or ``t10k-*`` (10,000 samples) from ``data_root``. Each
    sample is ``dict(img=<28 x 28 uint8 array>, gt_label=<int64>)``, labels 0-9
    in the order of ``FashionMNIST.METAINFO['classes']``. A missing or
    unreadable ``data_root`` or file is one error naming it and the fix;
    nothing is created unless ``download=True``.

    Args:
        data_root (str): The folder holding the files. Defaults to
            ``'/usr/share/datasets/fashion-mnist'`` (Debian's
            ``dataset-fashion-mnist``).
        split (str, optional): ``'train'`` or ``'test'``. Defaults to None,
            meaning ``'test'`` when ``test_mode=True`` and ``'train'``
            otherwise.
        download (bool): Whether to download the four files with MMPretrain's
            ``FashionMNIST`` (into ``data_root``, created if needed) when they
            are absent. Defaults to False (MMPretrain's default is True):
            nothing is fetched over the network unless asked.
        test_mode (bool): As in :class:`mmengine.dataset.BaseDataset`.
            Defaults to False.
        **kwargs: Other arguments of MMPretrain's ``FashionMNIST`` /
            ``BaseDataset``.
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
                f"{split!r}"
            )
        # MMPretrain 1.2's MNIST picks the files from test_mode, not split.
        self._idx_split = split
        super().__init__(
            data_root=data_root,
            split=split,
            download=download,
            test_mode=test_mode,
            **kwargs)

    def _find(self, filename: str) -> Optional[str]:
        """The path of ``filename`` (``.gz``) or of its uncompressed form, if
        present."""
        for name in (filename, filename[:-3]):
            path = osp.join(self.data_prefix['root'], name)
            if osp.isfile(path):
                return path
        return None

    def _paths(self) -> List[str]:
        """The split's image and label files; one error if the folder lacks
        them."""
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
            f'{self._idx_split} split '
            f'needs {names} (or the same names without .gz). Install them '
            f'with {_APT}, '
            'or pass download=True with a writable data_root.')

    def load_data_list(self) -> List[dict]:
        """Load the samples of the split, downloading only if asked and
        absent."""
        try:
            paths = self._paths()
        except FileNotFoundError:
            if not self.download:
                raise
            # MMPretrain's path downloads all four files and reads the
            # extracted ones; it selects them by test_mode, so align it with
            # our split.
            self.test_mode = self._idx_split == 'test'
            try:
                return super().load_data_list()
            except (OSError, RuntimeError,
                    AssertionError) as err:  # URLError: OSError
                root = osp.normpath(self.data_prefix['root'])
                raise RuntimeError(
                    f'Downloading Fashion-MNIST from {self.url_prefix} into '
                    f'{root!r} '
                    f'failed ({type(err).__name__}: {err}). Install the files '
                    'with '
                    f'{_APT} instead.') from None
        images, labels = _read_idx(paths[0]), _read_idx(paths[1])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f'Inconsistent Fashion-MNIST files: images {images.shape} '
                'from '
                f'{paths[0]}, labels {labels.shape} from {paths[1]}')
        return [
            dict(img=img, gt_label=np.array(label, dtype=np.int64))
            for img, label in zip(images, labels)
        ]


@TRANSFORMS.register_module()
class GrayToRGB(BaseTransform):
    """Repeat a grey image (``H x W`` or ``H x W x 1``) to three channels.

    Images that already have three channels pass unchanged.

    Required Keys: ``img``. Modified Keys: ``img``, ``img_shape``.
    """

    def transform(self, results: dict) -> dict:
        """Repeat ``results['img']`` to ``H x W x 3``.

        Args:
            results (dict): The sample.
        """
        img = results['img']
        if img.ndim == 2:
            img = img[..., None]
        if img.ndim != 3 or img.shape[-1] not in (1, 3):
            raise ValueError(
                'GrayToRGB expects an H x W or H x W x 1 (or x 3) image, got '
                'shape '
                f'{img.shape}')
        if img.shape[-1] == 1:
            img = np.repeat(img, 3, axis=-1)
        results['img'] = np.ascontiguousarray(img)
        results['img_shape'] = img.shape[:2]
        return results

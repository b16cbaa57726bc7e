"""Fashion-MNIST read from local idx ``.gz`` files.

Debian's ``dataset-fashion-mnist`` package installs the four compressed idx files of
Fashion-MNIST into ``/usr/share/datasets/fashion-mnist``. MMPretrain's ``FashionMNIST``
only reads the *uncompressed* files and downloads them otherwise; :class:`FashionMNISTIdx`
reads the ``.gz`` (or uncompressed) files where they are, without network, and falls back
to MMPretrain's download when they are absent and ``download=True``.

Images are grey ``H x W`` uint8 arrays; :class:`GrayToRGB` (a pipeline transform) repeats
them to three channels for models with ``in_channels=3``.
"""
import gzip
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.datasets import FashionMNIST
from mmpretrain.registry import DATASETS, TRANSFORMS

__all__ = ['FashionMNISTIdx', 'GrayToRGB', 'read_idx_file', 'DEFAULT_FASHION_MNIST_ROOT']

#: Where Debian's ``dataset-fashion-mnist`` package puts the files.
DEFAULT_FASHION_MNIST_ROOT = '/usr/share/datasets/fashion-mnist'

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype('>i2'),
    0x0C: np.dtype('>i4'),
    0x0D: np.dtype('>f4'),
    0x0E: np.dtype('>f8'),
}


def read_idx_file(path: str) -> np.ndarray:
    """Read an idx file (LeCun's MNIST format), gzip-compressed or not.

    The header is two zero bytes, a type code, the number of dimensions ``n`` and ``n``
    big-endian uint32 sizes; the data follows.

    Args:
        path (str): The file; a name ending in ``.gz`` is decompressed.

    Returns:
        np.ndarray: The array, with the shape given in the header.

    Raises:
        ValueError: If the header is malformed or the data size does not match it.
    """
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f'{path} is not an idx file (bad magic {data[:4]!r})')
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    shape = tuple(
        int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
    offset = 4 + 4 * ndim
    count = int(np.prod(shape)) if shape else 1
    if len(data) - offset != count * dtype.itemsize:
        raise ValueError(f'{path}: header says shape {shape} ({count} items) but the '
                         f'file holds {len(data) - offset} data bytes')
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)


@DATASETS.register_module()
class FashionMNISTIdx(FashionMNIST):
    """Fashion-MNIST from local idx files (``.gz`` or uncompressed), no network needed.

    Reads ``train-images-idx3-ubyte[.gz]`` / ``train-labels-idx1-ubyte[.gz]`` (60,000
    samples) or ``t10k-*`` (10,000 samples) from ``data_root``. Each sample is
    ``dict(img=<28 x 28 uint8 array>, gt_label=<int64>)``, labels 0-9 in the order of
    ``FashionMNIST.METAINFO['classes']``.

    Args:
        data_root (str): The folder holding the files. Defaults to
            ``'/usr/share/datasets/fashion-mnist'`` (Debian's ``dataset-fashion-mnist``).
        split (str, optional): ``'train'`` or ``'test'``. Defaults to None, meaning
            ``'test'`` when ``test_mode=True`` and ``'train'`` otherwise.
        download (bool): Whether to fall back to MMPretrain's download (into
            ``data_root``, which must then be writable) when the files are absent.
            Defaults to True.
        test_mode (bool): As in :class:`mmengine.dataset.BaseDataset`.
            Defaults to False.
        **kwargs: Other arguments of MMPretrain's ``FashionMNIST`` / ``BaseDataset``.
    """

    def __init__(self,
                 data_root: str = DEFAULT_FASHION_MNIST_ROOT,
                 split: Optional[str] = None,
                 download: bool = True,
                 test_mode: bool = False,
                 **kwargs):
        if split is None:
            split = 'test' if test_mode else 'train'
        if split not in ('train', 'test'):
            raise ValueError(
                f"FashionMNISTIdx split must be 'train' or 'test', got {split!r}")
        # MMPretrain 1.2's MNIST picks the files from test_mode, not split.
        self._idx_split = split
        super().__init__(
            data_root=data_root,
            split=split,
            download=download,
            test_mode=test_mode,
            **kwargs)

    def _split_files(self) -> Sequence[List[str]]:
        return self.train_list if self._idx_split == 'train' else self.test_list

    def _find(self, filename: str) -> Optional[str]:
        """The path of ``filename`` (``.gz``) or of its uncompressed form, if present."""
        root = self.data_prefix['root']
        for name in (filename, filename[:-3] if filename.endswith('.gz') else None):
            if name and osp.isfile(osp.join(root, name)):
                return osp.join(root, name)
        return None

    def load_data_list(self) -> List[dict]:
        """Load the samples of the split, downloading only if the files are absent."""
        names = [item[0] for item in self._split_files()]
        paths = [self._find(name) for name in names]
        if None in paths:
            if not self.download:
                raise FileNotFoundError(
                    f'Fashion-MNIST files {names} (or their uncompressed forms) not '
                    f"found in {self.data_prefix['root']!r}. Install them with "
                    f'`apt-get install dataset-fashion-mnist` (into '
                    f'{DEFAULT_FASHION_MNIST_ROOT}), point data_root at them, or set '
                    f'download=True.')
            # MMPretrain's path: downloads (all four files) and reads the extracted
            # files; it selects them by test_mode, so align it with our split.
            self.test_mode = self._idx_split == 'test'
            return super().load_data_list()
        images, labels = read_idx_file(paths[0]), read_idx_file(paths[1])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f'Inconsistent Fashion-MNIST files: images {images.shape} from '
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

        Returns:
            dict: The sample with a three-channel image.
        """
        img = results['img']
        if img.ndim == 2:
            img = img[..., None]
        if img.ndim != 3 or img.shape[-1] not in (1, 3):
            raise ValueError(
                f'GrayToRGB expects an H x W or H x W x 1 (or x 3) image, got shape '
                f'{img.shape}')
        if img.shape[-1] == 1:
            img = np.repeat(img, 3, axis=-1)
        results['img'] = np.ascontiguousarray(img)
        results['img_shape'] = img.shape[:2]
        return results

"""FashionMNISTIdx reads Debian's idx .gz files; GrayToRGB makes three channels."""
import gzip
import os.path as osp

import numpy as np
import pytest

import nfnet_mm  # noqa: F401
from mmengine.registry import DefaultScope
from mmpretrain.registry import DATASETS as _DATASETS
from mmpretrain.registry import TRANSFORMS as _TRANSFORMS

from nfnet_mm.datasets.fashion_mnist import (DEFAULT_FASHION_MNIST_ROOT,
                                             read_idx_file)

FILES = ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
         't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')


class _InMMPretrainScope:
    """Build from a registry under MMPretrain's scope, whatever the current one is."""

    def __init__(self, registry):
        self.registry = registry

    def build(self, cfg):
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            return self.registry.build(cfg)


DATASETS = _InMMPretrainScope(_DATASETS)
TRANSFORMS = _InMMPretrainScope(_TRANSFORMS)
HAVE_DATA = all(
    osp.isfile(osp.join(DEFAULT_FASHION_MNIST_ROOT, f)) for f in FILES)


def _idx_bytes(array):
    """An idx file written plainly from the format: 0, 0, type 0x08, ndim, sizes."""
    header = bytes([0, 0, 0x08, array.ndim])
    header += b''.join(int(n).to_bytes(4, 'big') for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_fake_split(root, prefix, n, compressed=True):
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (n, ), dtype=np.uint8)
    for kind, array in (('images-idx3', images), ('labels-idx1', labels)):
        name = osp.join(root, f'{prefix}-{kind}-ubyte')
        if compressed:
            with gzip.open(name + '.gz', 'wb') as f:
                f.write(_idx_bytes(array))
        else:
            with open(name, 'wb') as f:
                f.write(_idx_bytes(array))
    return images, labels


@pytest.mark.parametrize('compressed', [True, False])
def test_reads_local_idx_files_without_network(tmp_path, compressed):
    train_images, train_labels = _write_fake_split(tmp_path, 'train', 6, compressed)
    test_images, test_labels = _write_fake_split(tmp_path, 't10k', 4, compressed)
    train = DATASETS.build(dict(
        type='FashionMNISTIdx', data_root=str(tmp_path), download=False))
    test = DATASETS.build(dict(
        type='FashionMNISTIdx', data_root=str(tmp_path), split='test',
        download=False))
    assert len(train) == 6 and len(test) == 4
    for i in range(6):
        info = train.get_data_info(i)
        np.testing.assert_array_equal(info['img'], train_images[i])
        assert int(info['gt_label']) == train_labels[i]
    assert [int(test.get_data_info(i)['gt_label']) for i in range(4)] == list(test_labels)
    # test_mode alone selects the test split
    assert len(DATASETS.build(dict(type='FashionMNISTIdx', data_root=str(tmp_path),
                                   test_mode=True, download=False))) == 4


def test_missing_files_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='dataset-fashion-mnist'):
        DATASETS.build(dict(type='FashionMNISTIdx', data_root=str(tmp_path),
                            download=False))
    with pytest.raises(ValueError, match="'val'"):
        DATASETS.build(dict(type='FashionMNISTIdx', data_root=str(tmp_path),
                            split='val'))


def test_read_idx_file_rejects_truncated_data(tmp_path):
    path = tmp_path / 'bad-idx1-ubyte'
    path.write_bytes(_idx_bytes(np.arange(10, dtype=np.uint8))[:-3])
    with pytest.raises(ValueError, match='header says shape'):
        read_idx_file(str(path))


def test_gray_to_rgb_repeats_the_channel():
    transform = TRANSFORMS.build(dict(type='GrayToRGB'))
    img = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = transform(dict(img=img))['img']
    assert out.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], img)
    rgb = np.zeros((2, 2, 3), np.uint8)
    assert transform(dict(img=rgb))['img'].shape == (2, 2, 3)
    with pytest.raises(ValueError, match='shape'):
        transform(dict(img=np.zeros((2, 2, 2), np.uint8)))


@pytest.mark.skipif(
    not HAVE_DATA,
    reason=f'Fashion-MNIST idx .gz files not in {DEFAULT_FASHION_MNIST_ROOT} '
    '(apt-get install dataset-fashion-mnist)')
def test_debian_fashion_mnist_has_the_standard_split():
    train = DATASETS.build(dict(type='FashionMNISTIdx', download=False))
    test = DATASETS.build(dict(type='FashionMNISTIdx', split='test', download=False))
    assert len(train) == 60000 and len(test) == 10000
    assert len(train.metainfo['classes']) == 10
    for dataset, n in ((train, 60000), (test, 10000)):
        labels = dataset.get_gt_labels()
        assert labels.shape == (n, ) and labels.min() == 0 and labels.max() == 9
        # Fashion-MNIST is balanced: 6,000 / 1,000 images of each of the 10 classes
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [n // 10] * 10)
        first = dataset.get_data_info(0)['img']
        assert first.shape == (28, 28) and first.dtype == np.uint8


def test_absent_files_fall_back_to_mmpretrain_download(tmp_path, monkeypatch):
    from mmpretrain.datasets import FashionMNIST
    calls = []

    def fake_download(self):
        # MMPretrain's download leaves the extracted (uncompressed) files in the root
        calls.append(osp.normpath(self.data_prefix['root']))
        _write_fake_split(self.data_prefix['root'], 'train', 5, compressed=False)
        _write_fake_split(self.data_prefix['root'], 't10k', 3, compressed=False)

    monkeypatch.setattr(FashionMNIST, '_download', fake_download)
    test = DATASETS.build(dict(type='FashionMNISTIdx', data_root=str(tmp_path),
                               split='test'))
    assert calls == [str(tmp_path)]
    assert len(test) == 3
    # the files are now there: no second download
    assert len(DATASETS.build(dict(type='FashionMNISTIdx', data_root=str(tmp_path)))) == 5
    assert len(calls) == 1

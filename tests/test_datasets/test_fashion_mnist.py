"""FashionMNISTIdx reads Debian's idx .gz files; GrayToRGB makes three
channels."""
import gzip
import os
import os.path as osp
import traceback
import urllib.error

import numpy as np
import pytest
from mmengine.registry import DefaultScope
from mmpretrain.registry import DATASETS as _DATASETS
from mmpretrain.registry import TRANSFORMS as _TRANSFORMS

import nfnet_mm  # noqa: F401
from nfnet_mm.datasets.fashion_mnist import DEFAULT_FASHION_MNIST_ROOT

FILES = ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
         't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')


class _InMMPretrainScope:
    """Build from a registry under MMPretrain's scope, whatever the current one
    is."""

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
    """An idx file written plainly from the format: 0, 0, type 0x08, ndim,
    sizes."""
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
    train_images, train_labels = _write_fake_split(tmp_path, 'train', 6,
                                                   compressed)
    test_images, test_labels = _write_fake_split(tmp_path, 't10k', 4,
                                                 compressed)
    train = DATASETS.build(
        dict(type='FashionMNISTIdx', data_root=str(tmp_path), download=False))
    test = DATASETS.build(
        dict(
            type='FashionMNISTIdx',
            data_root=str(tmp_path),
            split='test',
            download=False))
    assert len(train) == 6 and len(test) == 4
    for i in range(6):
        info = train.get_data_info(i)
        np.testing.assert_array_equal(info['img'], train_images[i])
        assert int(info['gt_label']) == train_labels[i]
    assert [int(test.get_data_info(i)['gt_label'])
            for i in range(4)] == list(test_labels)
    # test_mode alone selects the test split
    assert len(
        DATASETS.build(
            dict(
                type='FashionMNISTIdx',
                data_root=str(tmp_path),
                test_mode=True,
                download=False))) == 4


def _one_error(exc):
    """The traceback Python prints holds this exception only, no chained
    ones."""
    text = ''.join(traceback.format_exception(exc))
    return ('During handling of the above' not in text
            and 'direct cause' not in text)


def _tree(root):
    return sorted((d, sorted(fs)) for d, _, fs in os.walk(root))


def _missing_root(tmp_path):
    return str(tmp_path / 'absent'), None


def _root_is_a_file(tmp_path):
    path = tmp_path / 'fashion-mnist'
    path.write_text('not a folder')
    return str(path), 'is not a folder'


def _lacks_labels(tmp_path):
    _write_fake_split(tmp_path, 'train', 3)
    os.remove(tmp_path / 'train-labels-idx1-ubyte.gz')
    return str(tmp_path), 'lacks train-labels-idx1-ubyte.gz'


def _unreadable_root(tmp_path, monkeypatch):
    _write_fake_split(tmp_path, 'train', 3)
    os.chmod(tmp_path, 0)
    if os.geteuid(
    ) == 0:  # root reads anything: answer as the OS does for a user
        real = os.access
        monkeypatch.setattr(
            os, 'access',
            lambda p, mode: str(p) != str(tmp_path) and real(p, mode))
    return str(tmp_path), 'cannot be read'


@pytest.mark.parametrize(
    'make', [_missing_root, _root_is_a_file, _lacks_labels, _unreadable_root])
def test_bad_data_root_is_one_error_naming_folder_files_and_fix(
        tmp_path, monkeypatch, make):
    """Missing, non-folder, incomplete, unreadable data_root: no download,
    nothing made."""
    from mmpretrain.datasets import FashionMNIST

    def no_download(self):
        raise AssertionError(
            'FashionMNISTIdx downloaded without download=True')

    monkeypatch.setattr(FashionMNIST, '_download', no_download)
    args = (tmp_path,
            monkeypatch) if make is _unreadable_root else (tmp_path, )
    root, problem = make(*args)
    problem = problem or 'does not exist'
    before = _tree(tmp_path)
    try:
        with pytest.raises(FileNotFoundError) as info:
            # download left at its default
            DATASETS.build(dict(type='FashionMNISTIdx', data_root=root))
    finally:
        os.chmod(tmp_path, 0o755)
    message = str(info.value)
    assert f"{root!r} {problem}" in message
    assert ("'train-images-idx3-ubyte.gz', "
            "'train-labels-idx1-ubyte.gz'") in message
    assert 'apt-get install dataset-fashion-mnist' in message
    assert 'download=True' in message
    assert _one_error(info.value)
    assert _tree(tmp_path) == before
    with pytest.raises(ValueError, match="'val'"):
        DATASETS.build(
            dict(type='FashionMNISTIdx', data_root=root, split='val'))


def _truncate_gz(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _truncate_raw(path):
    raw = path.with_suffix('')
    with gzip.open(path) as f:
        raw.write_bytes(f.read()[:-3])
    os.remove(path)
    return raw


def _not_gzip(path):
    path.write_text('<html>404 Not Found</html>')


@pytest.mark.parametrize('damage', [_truncate_gz, _truncate_raw, _not_gzip])
def test_truncated_or_corrupt_idx_file_is_named(tmp_path, damage):
    _write_fake_split(tmp_path, 't10k', 4)
    path = tmp_path / 't10k-images-idx3-ubyte.gz'
    path = damage(path) or path
    before = _tree(tmp_path)
    with pytest.raises(ValueError) as info:
        DATASETS.build(
            dict(
                type='FashionMNISTIdx', data_root=str(tmp_path), split='test'))
    message = str(info.value)
    assert message.startswith(f'{path} is truncated or corrupt')
    assert 'apt-get install --reinstall dataset-fashion-mnist' in message
    assert _one_error(info.value)
    assert _tree(tmp_path) == before


def test_failed_download_is_one_line_naming_url_and_folder(
        tmp_path, monkeypatch):
    import mmpretrain.datasets.utils as mmpretrain_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError(
            '[Errno -3] Temporary failure in name resolution')

    monkeypatch.setattr(mmpretrain_utils.urllib.request, 'urlopen', offline)
    root = tmp_path / 'fmnist'
    with pytest.raises(RuntimeError) as info:
        DATASETS.build(
            dict(type='FashionMNISTIdx', data_root=str(root), download=True))
    message = str(info.value)
    assert '\n' not in message and _one_error(info.value)
    assert message.startswith('Downloading Fashion-MNIST from http')
    assert f'into {str(root)!r} failed (URLError' in message
    assert 'name resolution' in message


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
    test = DATASETS.build(
        dict(type='FashionMNISTIdx', split='test', download=False))
    assert len(train) == 60000 and len(test) == 10000
    assert len(train.metainfo['classes']) == 10
    for dataset, n in ((train, 60000), (test, 10000)):
        labels = dataset.get_gt_labels()
        assert labels.shape == (
            n, ) and labels.min() == 0 and labels.max() == 9
        # Fashion-MNIST is balanced: 6,000 / 1,000 images of each of the 10
        # classes
        np.testing.assert_array_equal(
            np.bincount(labels, minlength=10), [n // 10] * 10)
        first = dataset.get_data_info(0)['img']
        assert first.shape == (28, 28) and first.dtype == np.uint8


def test_download_true_fetches_absent_files_with_mmpretrain(
        tmp_path, monkeypatch):
    from mmpretrain.datasets import FashionMNIST
    calls = []

    def fake_download(self):
        # MMPretrain's download leaves the extracted (uncompressed) files in
        # the root
        calls.append(osp.normpath(self.data_prefix['root']))
        _write_fake_split(
            self.data_prefix['root'], 'train', 5, compressed=False)
        _write_fake_split(
            self.data_prefix['root'], 't10k', 3, compressed=False)

    monkeypatch.setattr(FashionMNIST, '_download', fake_download)
    test = DATASETS.build(
        dict(
            type='FashionMNISTIdx',
            data_root=str(tmp_path),
            split='test',
            download=True))
    assert calls == [str(tmp_path)]
    assert len(test) == 3
    # the files are now there: no second download
    assert len(
        DATASETS.build(
            dict(
                type='FashionMNISTIdx', data_root=str(tmp_path),
                download=True))) == 5
    assert len(calls) == 1

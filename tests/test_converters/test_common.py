"""Both converters refuse incomplete or unreadable input: one error line that
names the file or the keys, exit status 1, nothing written."""
import argparse
import os
import pickle
import re

import numpy as np
import pytest
import torch
from helpers import TINY_ARCH, deepmind_tree, run_tool, timm_tiny_cfg

TIMM = 'tools/model_converters/timm_to_mmpretrain.py'
DEEPMIND = 'tools/model_converters/deepmind_to_mmpretrain.py'


def timm_state_dict():
    nfnet = pytest.importorskip('timm.models.nfnet')
    return nfnet.NormFreeNet(timm_tiny_cfg(), num_classes=10).state_dict()


def _drop(sd, *keys):
    for key in keys:
        del sd[key]
    return sd


def _set(container, key, value):
    container[key] = value
    return container


def _timm(edit):

    def write(path):
        torch.save(edit(timm_state_dict()), path)

    return write


def _deepmind(edit):

    def write(path):
        with open(path, 'wb') as f:
            pickle.dump(edit(deepmind_tree(TINY_ARCH)), f, protocol=4)

    return write


def _bytes(data):

    def write(path):
        with open(path, 'wb') as f:
            f.write(data)

    return write


def _truncated(write_whole):

    def write(path):
        write_whole(path)
        with open(path, 'rb') as f:
            data = f.read()
        _bytes(data[:len(data) // 2])(path)

    return write


RANDOM = np.random.default_rng(0).bytes(4096)
TEXT = b'state_dict = {"head.fc.weight": [0.1, 0.2]}\n' * 20
_NS = argparse.Namespace(lr=0.1)  # a global outside every allow-list
DEPTHS = ['--depths', '1', '1', '1', '1']
UNREADABLE = ('random bytes', 'text file', 'truncated file', 'empty file',
              'forbidden object')

CASES = [
    # (tool, row, writes the source, extra arguments, what the error says)
    (TIMM, 'two keys removed',
     _timm(lambda sd: _drop(sd, 'stages.1.1.conv2b.weight', 'head.fc.bias')),
     [], r"missing in the source \(2\): \['stages\.1\.1\.conv2b\.weight', "
     r"'head\.fc\.bias'\]"),
    (TIMM, 'key no rule converts',
     _timm(lambda sd: _set(sd, 'stages.0.0.extra.weight', torch.zeros(1))), [],
     r"no rule converts \(1\): \['stages\.0\.0\.extra\.weight'\]"),
    (TIMM, 'shape mismatch',
     _timm(lambda sd: _set(sd, 'final_conv.bias', torch.zeros(3))), [],
     r'backbone\.final_conv\.bias: \(3,\) vs \(256,\)'),
    (TIMM, 'other arch', _timm(lambda sd: sd), ['--arch', 'f0'],
     r'NFNet\(f0\).*shape mismatches'),
    (TIMM, 'random bytes', _bytes(RANDOM), [],
     'is neither a zip archive nor a pickle, not a PyTorch checkpoint'),
    (TIMM, 'text file', _bytes(TEXT), [], 'is a text file'),
    (TIMM, 'truncated file', _truncated(_timm(lambda sd: sd)), [],
     'is a damaged or truncated zip archive'),
    (TIMM, 'empty file', _bytes(b''), [], 'is empty'),
    (TIMM, 'forbidden object', _timm(lambda sd: _set(sd, 'args', _NS)), [],
     r"holds objects .*\['argparse\.Namespace'\]"),
    (TIMM, 'unknown arch name', _timm(lambda sd: sd), ['--arch', 'f9'],
     r"Unknown NFNet arch 'f9'; valid names: \[.*'f0', "),
    (TIMM, 'no such file', None, [],
     r'No such file or directory: .*source\.bin'),
    (DEEPMIND, 'no such file', None, DEPTHS,
     r'No such file or directory: .*source\.bin'),
    (DEEPMIND, "both 'b' and 'bias'",
     _deepmind(lambda t: _set(t, 'NFNet/~/linear',
                              dict(t['NFNet/~/linear'], bias=np.ones(10)))),
     DEPTHS,
     r'NFNet/~/linear:bias and another array both give head\.fc\.bias'),
    (DEEPMIND, 'module removed',
     _deepmind(lambda t: _drop(t, 'NFNet/~/nf_block_2/~/conv1b')), DEPTHS,
     r'missing in the source \(3\): .*nf_block_2/~/conv1b:w'),
    (DEEPMIND, 'module no rule converts',
     _deepmind(lambda t: _set(t, 'NFNet/~/extra', {'w': np.ones(2)})), DEPTHS,
     r"no rule converts \(1\): \['NFNet/~/extra:w'\]"),
    (DEEPMIND, 'shape mismatch',
     _deepmind(lambda t: _set(t, 'NFNet/~/linear', {
         'w': np.ones((256, 10)),
         'b': np.ones(9)
     })), DEPTHS, r'head\.fc\.bias: \(9,\) vs \(10,\)'),
    (DEEPMIND, 'random bytes', _bytes(RANDOM), [],
     'is neither a zip archive nor a pickle, not a DeepMind parameter file'),
    (DEEPMIND, 'text file', _bytes(TEXT), [], 'is a text file'),
    (DEEPMIND, 'truncated file', _truncated(_deepmind(lambda t: t)), [],
     'is a damaged or truncated pickle'),
    (DEEPMIND, 'empty file', _bytes(b''), [], 'is empty'),
    (DEEPMIND, 'forbidden object',
     _deepmind(lambda t: _set(t, 'NFNet/~/linear', {'w': _NS})), [],
     r"holds objects .*\['argparse\.Namespace'\]"),
]


@pytest.mark.parametrize(
    'tool,row,write,extra,message',
    CASES,
    ids=[
        f'{"timm" if c[0] == TIMM else "deepmind"}: '
        f'{c[1]}' for c in CASES
    ])
def test_bad_input_one_error_nothing_written(tmp_path, capsys, tool, row,
                                             write, extra, message):
    src, dst = tmp_path / 'source.bin', tmp_path / 'out' / 'converted.pth'
    if write:
        write(str(src))
    assert run_tool(tool, src, dst, *extra) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('ERROR: '), captured.err
    assert re.search(message, lines[0]), lines[0]
    if row in UNREADABLE:
        assert str(src) in lines[0]
    assert lines[0].isascii() and lines[0].isprintable()
    assert captured.out == ''
    assert not dst.parent.exists() or not os.listdir(
        dst.parent)  # no temp file


@pytest.mark.parametrize('tool,write', [(TIMM, _timm(lambda sd: sd)),
                                        (DEEPMIND, _deepmind(lambda t: t))])
def test_complete_input_is_converted(tmp_path, capsys, tool, write):
    src, dst = tmp_path / 'source.bin', tmp_path / 'out' / 'converted.pth'
    write(str(src))
    extra = DEPTHS if tool == DEEPMIND else []
    assert run_tool(tool, src, dst, *extra) == 0
    out = capsys.readouterr().out
    assert 'Converted' in out
    # an unnamed arch: the meta's alpha and strides are F0's, and it says so
    assert "custom; its meta has F0's alpha and strides" in out
    ckpt = torch.load(dst, weights_only=True)
    assert ckpt['meta']['arch']['depths'] == ([1, 1, 1, 1] if tool == DEEPMIND
                                              else [1, 2, 1, 1])

"""Shared helpers of the deploy tests (not collected: no ``test_`` prefix)."""
import copy
import os.path as osp
import runpy
import sys
from typing import Dict

import numpy as np
from helpers import REPO
from shared_archs import TINY_ARCH  # noqa: F401  (re-exported)

from nfnet_mm.models.backbones.nfnet import NFNet

F0_ARCH = copy.deepcopy(NFNet.arch_settings['f0'])


def run_tool(relpath: str, *args: str) -> int:
    """Run a command line under tools/ in this process; its exit status. The
    checkpoint opt-in the tools enable would outlive the test here: it is
    skipped (subprocess tests cover it)."""
    import nfnet_mm
    argv, enable = sys.argv, nfnet_mm.enable_safe_checkpoints
    sys.argv = [relpath, *map(str, args)]
    nfnet_mm.enable_safe_checkpoints = lambda: None
    try:
        runpy.run_path(osp.join(REPO, relpath), run_name='__main__')
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv, nfnet_mm.enable_safe_checkpoints = argv, enable
    return 0


def deepmind_tree(arch: dict,
                  num_classes: int = 10,
                  in_channels: int = 3,
                  seed: int = 0,
                  empty: bool = False) -> Dict[str, Dict[str, np.ndarray]]:
    """A parameter tree named and laid out as DeepMind's Haiku NFNet.

    Written from DeepMind's naming rules (``nfnet.py``): Haiku modules
    ``NFNet/~/stem_conv0..3``, ``NFNet/~/nf_block`` then ``nf_block_1`` ...
    numbered over all blocks, convs ``conv0, conv1, conv1b, conv2`` and
    ``conv_shortcut`` (only where the shape changes), an SE module
    ``squeeze_excite`` with ``linear``/``linear_1``; conv ``w`` is HWIO with
    ``I = in / groups``, linear ``w`` is IO.
    """
    rng = np.random.default_rng(seed)

    def array(*shape):
        if empty:
            return np.empty(shape, np.float32)
        return rng.standard_normal(shape, dtype=np.float32)

    tree = {}

    def conv(name, k, cin, cout, groups=1):
        tree[f'NFNet/~/{name}'] = {
            'w': array(k, k, cin // groups, cout),
            'gain': array(cout),
            'bias': array(cout),
        }

    def linear(name, cin, cout):
        tree[f'NFNet/~/{name}'] = {'w': array(cin, cout), 'b': array(cout)}

    ch = in_channels
    for i, width in enumerate(arch['stem_widths']):
        conv(f'stem_conv{i}', 3, ch, width)
        ch = width
    index = 0
    for depth, width, stride in zip(arch['depths'], arch['widths'],
                                    arch['strides']):
        for b in range(depth):
            name = 'nf_block' if index == 0 else f'nf_block_{index}'
            mid = int(width * arch['bottleneck_ratio'])
            groups = mid // arch['group_width']
            conv(f'{name}/~/conv0', 1, ch, mid)
            conv(f'{name}/~/conv1', 3, mid, mid, groups)
            conv(f'{name}/~/conv1b', 3, mid, mid, groups)
            conv(f'{name}/~/conv2', 1, mid, width)
            if (stride if b == 0 else 1) > 1 or ch != width:
                conv(f'{name}/~/conv_shortcut', 1, ch, width)
            hidden = max(1, int(width * arch['se_ratio']))
            linear(f'{name}/~/squeeze_excite/~/linear', width, hidden)
            linear(f'{name}/~/squeeze_excite/~/linear_1', hidden, width)
            tree[f'NFNet/~/{name}'] = {'skip_gain': array()}
            ch = width
            index += 1
    conv('final_conv', 1, ch, int(ch * arch['final_expansion']))
    linear('linear', int(ch * arch['final_expansion']), num_classes)
    return tree

"""FLOPs of F0-F6 at their test resolutions equal the paper's Table (GFLOPs).

The paper counts multiply-accumulates (as timm's "GMACs"); torch's
FlopCounterMode counts 2 FLOPs per multiply-accumulate of convolutions and
matmuls. The model is built and run on the meta device, so no memory or compute
is spent.
"""
import pytest
import torch
from helpers import classifier_cfg
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS
from torch.utils.flop_counter import FlopCounterMode

# variant: (test resolution, GFLOPs at test resolution) as the paper (Brock
# et al., 2021) gives them: the test resolutions of Table 1 ("Test") and the
# FLOPs of Table 3 ("#FLOPs", e.g. NFNet-F0 12.38B).
PAPER = {
    'f0': (256, 12.38),
    'f1': (320, 35.54),
    'f2': (352, 62.59),
    'f3': (416, 114.76),
    'f4': (512, 215.24),
    'f5': (544, 289.76),
    'f6': (576, 377.28),
}


@pytest.mark.parametrize('arch', sorted(PAPER))
def test_flops_at_test_resolution_match_the_paper(arch):
    init_default_scope('mmpretrain')
    px, gflops = PAPER[arch]
    with torch.device('meta'):
        model = MODELS.build(classifier_cfg(arch)).eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.empty(1, 3, px, px), mode='tensor')
    macs = counter.get_total_flops() / 2
    # the paper rounds to two decimals
    assert abs(macs / 1e9 - gflops) < 0.005 + 1e-9, (arch, macs / 1e9, gflops)

"""Arch dicts shared by the test folders (not a test module)."""
from nfnet_mm.models.backbones.nfnet import NFNet

# The small arch of docs/design.md, stated as what differs from F0: fast on
# CPU, every code path of the F-variants (transition blocks with and without
# pooling, grouped convs, SE, final conv).
TINY_DIFF = dict(
    depths=[1, 1, 1, 1],
    widths=[32, 64, 96, 128],
    group_width=16,
    stem_widths=[8, 16, 16, 32])
# resolved to all keys, for helpers that lay out parameters from the arch
TINY_ARCH = NFNet.parse_arch(TINY_DIFF)
# its output channels: the stage widths for indices 0-2, final_expansion x the
# last width for index 3
TINY_CHANNELS = [32, 64, 96, 2 * 128]

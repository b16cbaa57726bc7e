"""Arch dicts shared by the test folders (not a test module)."""

# The small arch of docs/design.md: fast on CPU, every code path of the F-variants
# (transition blocks with and without pooling, grouped convs, SE, final conv).
TINY_ARCH = dict(
    depths=[1, 1, 1, 1],
    widths=[32, 64, 96, 128],
    group_width=16,
    bottleneck_ratio=0.5,
    se_ratio=0.5,
    alpha=0.2,
    stem_widths=[8, 16, 16, 32],
    stem_strides=[2, 1, 1, 2],
    strides=[1, 2, 2, 2],
    final_expansion=2)
# its output channels: the stage widths for indices 0-2, final_expansion x the last
# width for index 3
TINY_CHANNELS = [32, 64, 96, 2 * 128]

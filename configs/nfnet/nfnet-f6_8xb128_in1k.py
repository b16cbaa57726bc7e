# NFNet-F6 on ImageNet-1k, 8 GPUs x 128 = 1024 images per step (the paper
# uses 4096: see nfnet-f6_64xb64_in1k.py). bf16 activations and gradients,
# fp32 weights and optimizer state, fp32 logits (NFNetClsHead); AGC
# clips after unscaling. Also the test config: tools/test.py with this file
# runs the 576 px single-crop evaluation (on the EMA weights).
_base_ = [
    '../_base_/models/nfnet/nfnet-f6.py',
    '../_base_/datasets/imagenet_bs128_nfnet-f6.py',
    '../_base_/schedules/imagenet_bs1024_nfnet.py',
    '../_base_/nfnet_runtime.py',
]

optim_wrapper = dict(type='AmpAGCOptimWrapper', dtype='bfloat16')
# Per-block activation checkpointing: at 448 px an image saves
# 1.19 GiB for backward, 0.22 GiB with it; 128 images a GPU then fit
# an 80 GB GPU (python -m lab.plan_memory; docs/benchmarks.md#memory).
model = dict(backbone=dict(with_cp=True))

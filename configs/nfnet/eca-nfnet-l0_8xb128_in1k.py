# ECA-NFNet-L0 (timm: 24.14M parameters, 82.59% top-1 at 288 px),
# timm's layout and numerics (SiLU, gamma folded into the convs, symmetric
# padding), trained from scratch with the paper's NFNet recipe at F0's
# regularisation (timm's own training settings are not published with its
# code); train at 224 px, test as timm evaluates: bicubic, 288 px, crop 1.0.
# Weights: timm's `eca_nfnet_l0` converted with
# tools/model_converters/timm_to_mmpretrain.py --model eca_nfnet_l0.
_base_ = [
    '../_base_/models/nfnet/nfnet-f0.py',
    '../_base_/datasets/imagenet_bs128_timm-eval.py',
    '../_base_/schedules/imagenet_bs1024_nfnet.py',
    '../_base_/nfnet_runtime.py',
]

# F0's regularisation: dropout 0.2, stochastic depth 0.25, label smoothing 0.1
model = dict(backbone=dict(arch='eca-l0'), head=dict(in_channels=2304))
optim_wrapper = dict(type='AmpAGCOptimWrapper', dtype='bfloat16')

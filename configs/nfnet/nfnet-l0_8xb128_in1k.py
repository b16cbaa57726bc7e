# NFNet-L0 (timm: 35.07M parameters, 82.77% top-1 at 288 px),
# timm's layout and numerics (SiLU, gamma folded into the convs, symmetric
# padding), trained from scratch with the paper's NFNet recipe at F0's
# regularisation (timm's own training settings are not published with its
# code); train at 224 px, test as timm evaluates: bicubic, 288 px, crop 1.0.
# Weights: timm's `nfnet_l0` converted with
# tools/model_converters/timm_to_mmpretrain.py --model nfnet_l0.
_base_ = [
    '../_base_/datasets/imagenet_bs128_timm-eval.py',
    '../_base_/schedules/imagenet_bs1024_nfnet.py',
    '../_base_/nfnet_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(type='NFNet', arch='l0', drop_path_rate=0.25),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='NFNetClsHead',
        num_classes=1000,
        in_channels=2304,
        dropout_rate=0.2,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)))
optim_wrapper = dict(type='AmpAGCOptimWrapper', dtype='bfloat16')

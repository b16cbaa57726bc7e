# ECA-NFNet-L1 (timm: 41.41M parameters, 84.06% top-1 at 320 px),
# timm's layout and numerics (SiLU, gamma folded into the convs, symmetric
# padding), trained from scratch with the paper's NFNet recipe at F0's
# regularisation (timm's own training settings are not published with its
# code); train at 256 px, test as timm evaluates: bicubic, 320 px, crop 1.0.
# Weights: timm's `eca_nfnet_l1` converted with
# tools/model_converters/timm_to_mmpretrain.py --model eca_nfnet_l1.
_base_ = [
    '../_base_/datasets/imagenet_bs128_timm-eval.py',
    '../_base_/schedules/imagenet_bs1024_nfnet.py',
    '../_base_/nfnet_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(type='NFNet', arch='eca-l1', drop_path_rate=0.25),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='NFNetClsHead',
        num_classes=1000,
        in_channels=3072,
        dropout_rate=0.2,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)))
optim_wrapper = dict(type='AmpAGCOptimWrapper', dtype='bfloat16')
train_dataloader = dict(
    dataset=dict(
        dataset=dict(pipeline=[
            dict(type='LoadImageFromFile'),
            dict(
                type='RandomResizedCrop',
                scale=256,
                crop_ratio_range=(0.08, 1.0),
                aspect_ratio_range=(3. / 4., 4. / 3.),
                backend='pillow',
                interpolation='bicubic'),
            dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        ])))
_test = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=320,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=320),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=_test))
test_dataloader = val_dataloader

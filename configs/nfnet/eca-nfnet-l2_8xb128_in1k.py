# ECA-NFNet-L2 (timm: 56.72M parameters, 84.71% top-1 at 384 px):
# ECA-NFNet-L1's recipe (eca-nfnet-l1_8xb128_in1k.py), deeper; train at
# 320 px, test as timm evaluates: bicubic, 384 px, crop 1.0. Weights: timm's
# `eca_nfnet_l2`, converted with
# tools/model_converters/timm_to_mmpretrain.py --model eca_nfnet_l2.
_base_ = ['./eca-nfnet-l1_8xb128_in1k.py']

model = dict(backbone=dict(arch='eca-l2'))
train_dataloader = dict(
    dataset=dict(
        dataset=dict(pipeline=[
            dict(type='LoadImageFromFile'),
            dict(
                type='RandomResizedCrop',
                scale=320,
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
        scale=384,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=384),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=_test))
test_dataloader = val_dataloader

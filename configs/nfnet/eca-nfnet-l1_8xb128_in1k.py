# ECA-NFNet-L1 (timm: 41.41M parameters, 84.06% top-1 at 320 px):
# ECA-NFNet-L0's recipe (eca-nfnet-l0_8xb128_in1k.py), deeper, with a
# 3072-wide final conv; train at 256 px, test as timm evaluates: bicubic,
# 320 px, crop 1.0. Weights: timm's `eca_nfnet_l1`, converted with
# tools/model_converters/timm_to_mmpretrain.py --model eca_nfnet_l1.
_base_ = ['./eca-nfnet-l0_8xb128_in1k.py']

model = dict(backbone=dict(arch='eca-l1'), head=dict(in_channels=3072))
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

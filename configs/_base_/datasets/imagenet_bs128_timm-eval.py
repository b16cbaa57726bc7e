# ImageNet for timm-trained NF models: the NFNet training pipeline (inception
# crop, flip, half MixUp / half CutMix, RandAugment 4 x 5 on the mixed images)
# at 224 px, and timm's evaluation (bicubic resize of the short side to
# test_px / crop_pct, centre crop test_px). Each model's config sets its sizes.
_base_ = ['./imagenet_bs128_nfnet-f0.py']

train_dataloader = dict(
    dataset=dict(
        dataset=dict(pipeline=[
            dict(type='LoadImageFromFile'),
            dict(
                type='RandomResizedCrop',
                scale=224,
                crop_ratio_range=(0.08, 1.0),
                aspect_ratio_range=(3. / 4., 4. / 3.),
                backend='pillow',
                interpolation='bicubic'),
            dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        ])))
# timm's eval at 288 px, crop fraction 1.0 (NFNet-L0, ECA-NFNet-L0)
val_dataloader = dict(
    dataset=dict(pipeline=[
        dict(type='LoadImageFromFile'),
        dict(
            type='ResizeEdge',
            scale=288,
            edge='short',
            backend='pillow',
            interpolation='bicubic'),
        dict(type='CenterCrop', crop_size=288),
        dict(type='PackInputs'),
    ]))
test_dataloader = val_dataloader

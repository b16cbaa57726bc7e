# ImageNet for NFNet-F2: train at 256 px with RandAugment 4 x 10,
# test at 352 px (bicubic resize to 352 + 32, centre crop 352).
# Everything but the resolutions and the RandAugment magnitude comes from the F0
# file (loaders, preprocessing, evaluation); MMEngine replaces lists whole, so the
# two pipelines are restated here.
_base_ = ['./imagenet_bs128_nfnet-f0.py']

train_px = 256
test_px = 352

train_pipeline = [
    dict(type='LoadImageFromFile'),
    # Inception crop: area 8%-100%, aspect ratio 3/4-4/3, bicubic
    dict(
        type='RandomResizedCrop',
        scale=train_px,
        crop_ratio_range=(0.08, 1.0),
        aspect_ratio_range=(3. / 4., 4. / 3.),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # DeepMind's RandAugment, per image, before the batch mixing
    dict(type='NFRandAugment', num_layers=4, magnitude=10),
    dict(type='PackInputs'),
]

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=test_px + 32,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=test_px),
    dict(type='PackInputs'),
]

train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

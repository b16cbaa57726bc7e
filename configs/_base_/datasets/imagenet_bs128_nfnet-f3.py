# ImageNet for NFNet-F3: train at 320 px with RandAugment 4 x 15 on the
# mixed images, test at 416 px (bicubic squash resize to (416 + 32)^2,
# centre crop 416).
# Everything but the resolutions and the RandAugment magnitude comes from the F0
# file (loaders, mixing, preprocessing, evaluation); MMEngine replaces lists
# whole, so the pipelines are restated here.
_base_ = ['./imagenet_bs128_nfnet-f0.py']

train_px = 320
test_px = 416

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
]
# DeepMind's RandAugment, on each mixed image
train_augment = [dict(type='NFRandAugment', num_layers=4, magnitude=15)]

test_pipeline = [
    dict(type='LoadImageFromFile'),
    # DeepMind's resize_crop_32: the whole image squashed to a square
    dict(
        type='Resize',
        scale=(test_px + 32, test_px + 32),
        keep_ratio=False,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=test_px),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    dataset=dict(dataset=dict(pipeline=train_pipeline), augment=train_augment))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

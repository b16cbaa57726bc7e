# ImageNet for NFNet-F0: train at 192 px with RandAugment 4 x 5 on the mixed
# images, test at 256 px (bicubic squash resize to (256 + 32)^2, centre crop 256).
dataset_type = 'ImageNet'
data_root = 'data/imagenet'
train_px = 192
test_px = 256
data_preprocessor = dict(
    num_classes=1000,
    # RGB mean/std of ImageNet
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
)

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
# DeepMind's RandAugment, on each mixed image (the reference's
# augment_before_mix=False)
train_augment = [dict(type='NFRandAugment', num_layers=4, magnitude=5)]

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
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    # MixUp on half of each batch and CutMix on the other half, each mixed
    # image from two distinct images, then RandAugment and PackInputs
    dataset=dict(
        type='MixupCutMixDataset',
        dataset=dict(
            type=dataset_type,
            data_root=data_root,
            split='train',
            pipeline=train_pipeline),
        augment=train_augment,
        mixup_alpha=0.2,
        partners='distinct',
        augment_before_mix=False),
    sampler=dict(type='DefaultSampler', shuffle=True),
)

val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))

# the test split is ImageNet val, with the same single-crop protocol
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# ImageNet for NFNet-F5: train at 416 px with RandAugment 4 x 15,
# test at 544 px (bicubic resize to 544 + 32, centre crop 544).
dataset_type = 'ImageNet'
data_root = 'data/imagenet'
train_px = 416
test_px = 544
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
    # DeepMind's RandAugment, per image, before the batch mixing
    dict(type='NFRandAugment', num_layers=4, magnitude=15),
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

train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        pipeline=train_pipeline),
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

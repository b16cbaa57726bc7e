# NFNet demo: a small normalizer-free network trained from scratch on
# Fashion-MNIST on a CPU (2 cores, 6 epochs; accuracy and time: README), with
# the whole NFNet recipe scaled down: scaled WS convs, SkipInit, SE, AGC,
# Nesterov SGD with warm-up + cosine, weight decay off gains/biases, label
# smoothing, half-MixUp/half-CutMix (light) then NF RandAugment on the mixed
# images, EMA with warm-up (validation runs on the EMA weights every epoch on
# the test split).
#
#   python tools/train.py \
#       configs/fashion_mnist/nfnet-demo_1xb128_fashion-mnist.py
custom_imports = dict(
    imports=['nfnet_mm', 'nfnet_mm.compat.safe_checkpoints'],
    allow_failed_imports=False)
default_scope = 'mmpretrain'

# ---------------------------------------------------------------- model
# 28 px input: the stem's first conv keeps 28 px, its second halves it
# (28 -> 14), stage 2 halves again (14 -> 7); stages 3 and 4 stay at 7 x 7.
# final_expansion=1 (no widening before the pooling) keeps it cheap on a CPU.
demo_arch = dict(
    depths=[1, 1, 1, 1],
    widths=[32, 64, 96, 128],
    group_width=16,
    bottleneck_ratio=0.5,
    se_ratio=0.5,
    alpha=0.2,
    stem_widths=[8, 16, 16, 32],
    stem_strides=[1, 2, 1, 1],
    strides=[1, 2, 1, 1],
    final_expansion=1)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='NFNet',
        arch=demo_arch,
        drop_path_rate=0.05,
        padding='symmetric'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='NFNetClsHead',
        num_classes=10,
        in_channels=128,  # final_expansion x widths[-1]
        dropout_rate=0.1,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                  mode='original'),
        topk=(1, )))

# ----------------------------------------------------------------- data
dataset_type = 'FashionMNISTIdx'
data_root = '/usr/share/datasets/fashion-mnist'
data_preprocessor = dict(
    num_classes=10,
    # Fashion-MNIST mean/std (grey, repeated over the 3 channels)
    mean=[72.94, 72.94, 72.94],
    std=[90.02, 90.02, 90.02],
    to_rgb=False)

train_pipeline = [
    dict(type='GrayToRGB'),
    dict(type='RandomCrop', crop_size=28, padding=2),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
]
# light RandAugment on the mixed images: on 20% of the images, one op at
# magnitude 5 (the F0 magnitude); pixel constants scaled from 224 px to 28 px
train_augment = [
    dict(
        type='RandomApply',
        transforms=[
            dict(type='NFRandAugment', num_layers=1, magnitude=5,
                 translate_const=12.5, cutout_const=5, pad_val=0)
        ],
        prob=0.2)
]
test_pipeline = [
    dict(type='GrayToRGB'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=128,
    num_workers=1,
    persistent_workers=True,
    # half-MixUp / half-CutMix on 10% of the batches ("light"), then the
    # RandAugment above (augment_before_mix=True gives the old order)
    dataset=dict(
        type='MixupCutMixDataset',
        dataset=dict(
            type=dataset_type, data_root=data_root, split='train',
            pipeline=train_pipeline),
        augment=train_augment,
        augment_before_mix=False,
        mix_prob=0.1),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=500,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type, data_root=data_root, split='test',
        test_mode=True, pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# ------------------------------------------------------------- schedule
max_epochs = 6
optim_wrapper = dict(
    type='AGCOptimWrapper',
    optimizer=dict(
        type='SGD', lr=0.4, momentum=0.9, nesterov=True, weight_decay=5e-5),
    # a small batch tolerates a larger clipping threshold than 0.01
    agc=dict(clipping=0.04, eps=1e-3, exclude=['head.fc.weight']),
    paramwise_cfg=dict(
        bias_decay_mult=0.,
        custom_keys={
            '.gain': dict(decay_mult=0.),
            'skip_gain': dict(decay_mult=0.),
        }))
# warm-up over half an epoch, then a cosine to 0 that ends with the run (no
# `end`: MMEngine's Runner sets it to train_cfg.max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0,
         end=0.5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=True, begin=0.5,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=128)

# -------------------------------------------------------------- runtime
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1,
                    save_best='auto'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)
# EMA with the paper's warm-up, capped at decay 0.998 for a ~2,800-step run;
# validation/test on the EMA weights.
custom_hooks = [
    dict(type='EMAHook', ema_type='NFNetEMA', momentum=2e-3,
         evaluate_on_ema=True, evaluate_on_origin=False,
         priority='ABOVE_NORMAL')
]
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)

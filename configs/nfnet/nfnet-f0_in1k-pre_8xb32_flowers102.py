# Fine-tune an ImageNet-1k NFNet-F0 on Oxford Flowers-102 (8 GPUs x 32 = 256
# images per step) with the paper's fine-tuning choices (Appendix A.5): SAM rho
# 0.05, weight decay 1e-5, dropout 0.25, stochastic depth 0.1, EMA with
# warm-up, linear warm-up over the first third of the steps then cosine to 0.
# 1500 steps here. Point `model.backbone.init_cfg.checkpoint` at your ImageNet
# checkpoint (default placeholder: checkpoints/nfnet-f0_in1k.pth).
_base_ = [
    '../_base_/models/nfnet/nfnet-f0.py',
    '../_base_/schedules/finetune_nfnet_sam.py',
    '../_base_/nfnet_runtime.py',
]

model = dict(
    type='SAMImageClassifier',
    backbone=dict(
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            # placeholder: an ImageNet-1k NFNet-F0 checkpoint (see README)
            checkpoint='checkpoints/nfnet-f0_in1k.pth',
            prefix='backbone.')),
    # no MixUp / CutMix / RandAugment when fine-tuning (Appendix A.5)
    head=dict(num_classes=102, dropout_rate=0.25))

dataset_type = 'Flowers102'
data_root = 'data/flowers102'
data_preprocessor = dict(
    num_classes=102,
    # ImageNet statistics, as in pre-training
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=192, backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    # NFNet-F0's test protocol (DeepMind's resize_crop_32): squash to
    # 288 x 288, centre crop 256
    dict(type='Resize', scale=(288, 288), keep_ratio=False, backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=256),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root,
                 split='trainval', pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=4,
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root,
                 split='test', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

max_iters = 1500
warmup_iters = 500
param_scheduler = [  # the cosine ends with the run (train_cfg.max_iters)
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=False,
         begin=warmup_iters),
]
train_cfg = dict(by_epoch=False, max_iters=max_iters,
                 val_interval=500)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False,
                    interval=500, max_keep_ckpts=2))

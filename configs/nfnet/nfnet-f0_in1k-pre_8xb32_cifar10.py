# Fine-tune an ImageNet-1k NFNet-F0 on CIFAR-10 (8 GPUs x 32 = 256 images per
# step) with the paper's fine-tuning choices (Appendix A.5): SAM rho 0.05,
# weight decay 1e-5, dropout 0.25, stochastic depth 0.1, EMA with warm-up,
# linear warm-up over the first third of the steps then cosine to 0.
# 9000 steps here. Point `model.backbone.init_cfg.checkpoint` at your
# ImageNet checkpoint (default placeholder: checkpoints/nfnet-f0_in1k.pth).
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
    head=dict(num_classes=10, dropout_rate=0.25))

dataset_type = 'CIFAR10'
data_root = 'data/cifar10'
data_preprocessor = dict(
    num_classes=10,
    # ImageNet statistics, as in pre-training
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=False,
)
train_pipeline = [
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # 32 px images upsampled to 224 px for the ImageNet-trained network
    dict(type='Resize', scale=224, interpolation='bicubic'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='Resize', scale=224, interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root,
                 split='train', pipeline=train_pipeline),
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

max_iters = 9000
warmup_iters = 3000
param_scheduler = [  # the cosine ends with the run (train_cfg.max_iters)
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=False,
         begin=warmup_iters),
]
train_cfg = dict(by_epoch=False, max_iters=max_iters,
                 val_interval=1000)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False,
                    interval=1000, max_keep_ckpts=2))

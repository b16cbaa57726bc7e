# NFNet schedule (paper, Appendix A), written for 1024 images per step:
# SGD with Nesterov momentum 0.9, lr = 0.1 x batch / 256 = 0.4, linear
# warm-up from 0 over 5 epochs, cosine decay to 0 at epoch 360, both per
# iteration. `--auto-scale-lr` rescales lr to the real total batch.
optim_wrapper = dict(
    type='AGCOptimWrapper',
    optimizer=dict(
        type='SGD', lr=0.4, momentum=0.9, nesterov=True, weight_decay=2e-5),
    # AGC (eq. 3) with lambda 0.01 on every parameter except the classifier
    # weight (the classifier bias, gains, biases and SE layers are clipped)
    agc=dict(clipping=0.01, eps=1e-3, exclude=['head.fc.weight']),
    # weight decay 2e-5 on weights only: not on biases (conv, SE, classifier),
    # the per-channel conv gains nor the blocks' skip gains
    paramwise_cfg=dict(
        bias_decay_mult=0.,
        custom_keys={
            '.gain': dict(decay_mult=0.),
            'skip_gain': dict(decay_mult=0.),
        }),
)

param_scheduler = [
    # warm-up "from 0": LinearLR needs a positive start factor
    dict(
        type='LinearLR',
        start_factor=1e-6,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    # no `end`: MMEngine's Runner ends the cosine with the run (epoch 360)
    dict(
        type='CosineAnnealingLR',
        eta_min=0.,
        by_epoch=True,
        begin=5,
        convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=360, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# the lr above is for 1024 images per step
auto_scale_lr = dict(base_batch_size=1024)
# DDP: gradients live in the all-reduce buckets (one copy fewer; AGC clips
# them in place, SAM's stash keeps them: both tested). Set
# find_unused_parameters here: the Runner's top-level key no longer applies.
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel',
    broadcast_buffers=False,
    find_unused_parameters=False,
    gradient_as_bucket_view=True)

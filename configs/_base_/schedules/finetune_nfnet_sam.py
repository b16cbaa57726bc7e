# Fine-tuning schedule after the paper's Appendix A.5 (15k steps at batch
# 2048, lr 0.1 warmed up over the first third then cosine to 0, SAM rho
# 0.05, weight decay 1e-5), scaled to small datasets and 256 images per
# step: lr = 0.1 x 256 / 2048, iteration-based, warm-up over the first third
# of the steps. The configs that use it set `max_iters`/`warmup_iters`.
max_iters = 9000
warmup_iters = 3000
optim_wrapper = dict(
    type='AmpSAMOptimWrapper',
    dtype='bfloat16',
    rho=0.05,
    ascent_fraction=0.2,
    optimizer=dict(
        type='SGD', lr=0.0125, momentum=0.9, nesterov=True,
        weight_decay=1e-5),
    agc=dict(clipping=0.01, eps=1e-3, exclude=['head.fc.weight']),
    paramwise_cfg=dict(
        bias_decay_mult=0.,
        custom_keys={
            '.gain': dict(decay_mult=0.),
            'skip_gain': dict(decay_mult=0.),
        }),
)
# DDP: gradients live in the all-reduce buckets (one copy fewer; AGC clips
# them in place, SAM's stash keeps them: both tested). Set
# find_unused_parameters here: the Runner's top-level key no longer applies.
model_wrapper_cfg = dict(
    type='SAMDistributedDataParallel',
    broadcast_buffers=False,
    find_unused_parameters=False,
    gradient_as_bucket_view=True)
auto_scale_lr = dict(base_batch_size=256)

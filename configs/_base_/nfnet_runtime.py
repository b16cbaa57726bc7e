# Runtime for the NFNet recipes: MMPretrain's defaults plus the EMA of the
# weights (decay 0.99999 with the warm-up min(decay, (1 + t) / (10 + t))).
# Validation and test run on the EMA weights; checkpoints hold the EMA
# weights in `state_dict` and the raw weights in `ema_state_dict` (MMEngine's
# swap), so a checkpoint deploys the EMA model directly.
custom_imports = dict(
    imports=['nfnet_mm', 'nfnet_mm.compat.safe_checkpoints'],
    allow_failed_imports=False)
default_scope = 'mmpretrain'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)

custom_hooks = [
    # momentum = 1 - decay (MMEngine's convention)
    dict(
        type='EMAHook',
        ema_type='NFNetEMA',
        momentum=1e-5,
        evaluate_on_ema=True,
        evaluate_on_origin=False,
        priority='ABOVE_NORMAL'),
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
randomness = dict(seed=None, deterministic=False)

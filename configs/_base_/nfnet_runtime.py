# Runtime for the NFNet recipes: MMPretrain's defaults plus the EMA of the
# weights (decay 0.99999 with the warm-up min(decay, (1 + t) / (10 + t))).
# Validation and test run on the EMA weights; checkpoints hold the EMA
# weights in `state_dict` and the raw weights in `ema_state_dict` (MMEngine's
# swap), so a checkpoint deploys the EMA model directly.
_base_ = ['mmpretrain::_base_/default_runtime.py']

# nfnet_mm registers the modules; nfnet_mm.compat.safe_checkpoints lets
# MMPretrain's own tools resume and test on torch >= 2.6 (see nfnet_mm/compat)
custom_imports = dict(
    imports=['nfnet_mm', 'nfnet_mm.compat.safe_checkpoints'],
    allow_failed_imports=False)

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))

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

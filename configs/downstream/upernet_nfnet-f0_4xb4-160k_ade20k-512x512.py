# UPerNet with an NFNet-F0 backbone on ADE20K (MMSegmentation 1.2.x).
# Needs: pip install mmsegmentation==1.2.2 and full mmcv 2.1.0
# (see docs/downstream.md).
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]

# Registers NFNet (in MMPretrain's registry) and the StrictPretrained
# initializer.
custom_imports = dict(
    imports=['nfnet_mm', 'nfnet_mm.compat.safe_checkpoints'],
    allow_failed_imports=False)

# An NFNet-F0 ImageNet classifier checkpoint of ours, e.g. written by
# tools/model_converters/deepmind_to_mmpretrain.py; its backbone keys carry the
# prefix 'backbone.'.
checkpoint_file = 'checkpoints/nfnet-f0_3rdparty_in1k.pth'

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        # NFNet lives in MMPretrain's MODELS: from MMSeg's scope it must be
        # named with the scope prefix (a plain 'NFNet' is not found).
        type='mmpretrain.NFNet',
        arch='f0',
        out_indices=(0, 1, 2, 3),  # strides 4, 8, 16, 32
        frozen_stages=-1,
        # StrictPretrained (registered in MMEngine's root registry, so found
        # from any scope) fails on any missing/unexpected/misshaped key;
        # type='Pretrained' would only warn.
        init_cfg=dict(
            type='StrictPretrained',
            checkpoint=checkpoint_file,
            prefix='backbone.')),
    # F0 outputs: residual streams of stages 1-3 and the final 1x1 conv.
    decode_head=dict(in_channels=[256, 512, 1536, 3072], num_classes=150),
    auxiliary_head=dict(in_channels=1536, num_classes=150))

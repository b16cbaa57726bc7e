# RetinaNet + FPN with an ECA-NFNet-L0 backbone (timm's weights) on COCO
# (MMDetection 3.3.x). MMDet's data preprocessor (RGB, ImageNet mean/std) is
# the one timm's weights expect.
# Needs: pip install mmdet==3.3.0 and full mmcv 2.1.0 (see docs/downstream.md).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

# Registers NFNet (in MMPretrain's registry) and the StrictPretrained
# initializer.
custom_imports = dict(
    imports=['nfnet_mm', 'nfnet_mm.compat.safe_checkpoints'],
    allow_failed_imports=False)

# timm's eca_nfnet_l0 converted with
# tools/model_converters/timm_to_mmpretrain.py --model eca_nfnet_l0.
checkpoint_file = 'checkpoints/eca-nfnet-l0_3rdparty_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        # MMDet's MODELS is a sibling of MMPretrain's (both children of
        # MMEngine's root): the scope prefix is required.
        type='mmpretrain.NFNet',
        arch='eca-l0',
        out_indices=(0, 1, 2, 3),  # strides 4, 8, 16, 32
        frozen_stages=1,  # stem + stage 1, as ResNet's frozen_stages=1
        init_cfg=dict(
            type='StrictPretrained',
            checkpoint=checkpoint_file,
            prefix='backbone.')),
    # No norm layers in NFNets: nothing like norm_eval to set.
    neck=dict(in_channels=[256, 512, 1536, 2304]))

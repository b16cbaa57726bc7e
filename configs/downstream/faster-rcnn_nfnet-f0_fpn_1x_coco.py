# Faster R-CNN + FPN with an NFNet-F0 backbone on COCO (MMDetection 3.3.x).
# Needs: pip install mmdet==3.3.0 and full mmcv 2.1.0 (see docs/downstream.md).
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'

# Registers NFNet (in MMPretrain's registry) and the StrictPretrained
# initializer.
custom_imports = dict(
    imports=['nfnet_mm', 'nfnet_mm.compat.safe_checkpoints'],
    allow_failed_imports=False)

# An NFNet-F0 ImageNet classifier checkpoint of ours, e.g. written by
# tools/model_converters/deepmind_to_mmpretrain.py.
checkpoint_file = 'checkpoints/nfnet-f0_3rdparty_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        # MMDet's MODELS is a sibling of MMPretrain's (both children of
        # MMEngine's root): the scope prefix is required.
        type='mmpretrain.NFNet',
        arch='f0',
        out_indices=(0, 1, 2, 3),  # strides 4, 8, 16, 32
        frozen_stages=1,  # stem + stage 1, as ResNet's frozen_stages=1
        init_cfg=dict(
            type='StrictPretrained',
            checkpoint=checkpoint_file,
            prefix='backbone.')),
    # No norm layers in NFNets: nothing like norm_eval to set.
    neck=dict(in_channels=[256, 512, 1536, 3072]))

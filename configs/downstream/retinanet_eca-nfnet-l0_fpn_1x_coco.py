# RetinaNet + FPN with an ECA-NFNet-L0 backbone (timm's weights) on COCO
# (MMDetection 3.3.x): the F0 config with the L0 arch and its widths. MMDet's
# data preprocessor (RGB, ImageNet mean/std) is the one timm's weights expect.
_base_ = './retinanet_nfnet-f0_fpn_1x_coco.py'

# timm's eca_nfnet_l0 converted with
# tools/model_converters/timm_to_mmpretrain.py --model eca_nfnet_l0.
checkpoint_file = 'checkpoints/eca-nfnet-l0_3rdparty_in1k.pth'

model = dict(
    backbone=dict(arch='eca-l0', init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[256, 512, 1536, 2304]))

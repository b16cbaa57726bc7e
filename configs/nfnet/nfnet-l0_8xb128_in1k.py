# NFNet-L0 (timm: 35.07M parameters, 82.77% top-1 at 288 px): ECA-NFNet-L0's
# recipe and protocol (eca-nfnet-l0_8xb128_in1k.py) with SE (0.25) in place of
# ECA and a 2304-wide final conv. Weights: timm's `nfnet_l0`, converted with
# tools/model_converters/timm_to_mmpretrain.py --model nfnet_l0.
_base_ = ['./eca-nfnet-l0_8xb128_in1k.py']

model = dict(backbone=dict(arch='l0'))

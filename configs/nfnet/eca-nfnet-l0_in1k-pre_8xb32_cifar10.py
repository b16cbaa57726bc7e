# Fine-tune timm's ImageNet-1k ECA-NFNet-L0 on CIFAR-10 with the paper's
# fine-tuning recipe (Appendix A.5; see nfnet-f0_in1k-pre_8xb32_cifar10.py):
# SAM rho 0.05, weight decay 1e-5, dropout 0.25, stochastic depth 0.1, EMA.
# Point the checkpoint at timm's eca_nfnet_l0 converted with
# tools/model_converters/timm_to_mmpretrain.py --model eca_nfnet_l0.
_base_ = ['./nfnet-f0_in1k-pre_8xb32_cifar10.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='NFNet',
        arch='eca-l0',
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/eca-nfnet-l0_3rdparty_in1k.pth',
            prefix='backbone.')),
    head=dict(in_channels=2304))

# NFNet-F6 (Brock et al., 2021): F0's model with dropout 0.5.
_base_ = ['./nfnet-f0.py']

model = dict(backbone=dict(arch='f6'), head=dict(dropout_rate=0.5))

# NFNet-F3 (Brock et al., 2021): F0's model with dropout 0.4.
_base_ = ['./nfnet-f0.py']

model = dict(backbone=dict(arch='f3'), head=dict(dropout_rate=0.4))

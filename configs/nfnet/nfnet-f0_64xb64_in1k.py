# NFNet-F0 with the paper's batch: 64 GPUs x 64 = 4096 images per step,
# lr = 0.1 x 4096 / 256 = 1.6 (AGC 0.01 as in the paper for 4096).
_base_ = './nfnet-f0_8xb128_in1k.py'

train_dataloader = dict(batch_size=64)
optim_wrapper = dict(optimizer=dict(lr=1.6))
auto_scale_lr = dict(base_batch_size=4096)

# NFNet-F6 with SAM (rho 0.05), as in the paper's best F6 result. The
# ascent gradient uses the first 20% of each replica's batch and is not
# synchronised across replicas (SAMDistributedDataParallel); the descent
# gradient uses the whole batch, is all-reduced, then clipped by AGC.
_base_ = './nfnet-f6_8xb128_in1k.py'

model = dict(type='SAMImageClassifier')
optim_wrapper = dict(
    type='AmpSAMOptimWrapper',
    dtype='bfloat16',
    rho=0.05,
    ascent_fraction=0.2)
model_wrapper_cfg = dict(type='SAMDistributedDataParallel')

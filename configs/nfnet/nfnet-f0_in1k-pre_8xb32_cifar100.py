# Fine-tune an ImageNet-1k NFNet-F0 on CIFAR-100: the cifar10 recipe
# (paper Appendix A.5 choices, schedule and pipelines) with another dataset.
_base_ = ['./nfnet-f0_in1k-pre_8xb32_cifar10.py']

model = dict(head=dict(num_classes=100))
data_preprocessor = dict(num_classes=100)
dataset_type = 'CIFAR100'
data_root = 'data/cifar100'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader

# Fine-tune an ImageNet-1k NFNet-F0 on Oxford-IIIT Pets: the flowers102 recipe
# (paper Appendix A.5 choices, schedule and pipelines) with another dataset.
_base_ = ['./nfnet-f0_in1k-pre_8xb32_flowers102.py']

model = dict(head=dict(num_classes=37))
data_preprocessor = dict(num_classes=37)
dataset_type = 'OxfordIIITPet'
data_root = 'data/Oxford-IIIT_Pets'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader

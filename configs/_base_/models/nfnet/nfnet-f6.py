# NFNet-F6 (Brock et al., 2021): dropout 0.5, stochastic depth 0.25,
# label smoothing 0.1 on the soft labels of half-MixUp / half-CutMix.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='NFNet', arch='f6', drop_path_rate=0.25),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='NFNetClsHead',
        num_classes=1000,
        in_channels=3072,
        dropout_rate=0.5,
        # mode='original': target * (1 - 0.1) + 0.1 / num_classes, applied to
        # the (soft) mixed targets, as the reference does
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)))
# MixUp / CutMix run in the data loader (MixupCutMixDataset, datasets/ base)

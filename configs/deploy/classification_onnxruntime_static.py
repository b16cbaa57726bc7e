# MMDeploy 1.3.1: nfnet_mm classifiers -> ONNX -> onnxruntime, static shape.
# The input size comes from the model config's test pipeline (e.g. 256 px for
# NFNet-F0); set onnx_config.input_shape=[W, H] to fix another one.
# Run through tools/deploy/mmdeploy.py, which puts the TorchScript ONNX
# exporter in effect (torch >= 2.9 defaults to the dynamo exporter, which
# MMDeploy 1.3.1 does not support). MMDeploy folds the weight
# standardisation (backbone.switch_to_deploy()) before exporting.
custom_imports = dict(imports=['nfnet_mm'], allow_failed_imports=False)

codebase_config = dict(type='mmpretrain', task='Classification')
backend_config = dict(type='onnxruntime')
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=11,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['output'],
    input_shape=None,
    optimize=True)

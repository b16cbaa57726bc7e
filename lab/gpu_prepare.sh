#!/usr/bin/env bash
# Stage what gpu_report.sh needs on the lent GPU machine, before the device
# time starts. That machine has python3 (3.12) with torch, timm, numpy,
# OpenCV, matplotlib and rich, but no OpenMMLab package and no network: the
# wheels go to .whl/ (setuptools < 82 to .whl/opt/, installed there only if
# pkg_resources is missing) and Fashion-MNIST to data/fashion-mnist/; both
# are git-ignored, so the device call names them in `carry` (about 33 MiB).
#
#   bash lab/gpu_prepare.sh
#   # then one device call (see docs/benchmarks.md, "GPU report"):
#   #   command: bash lab/gpu_report.sh $OUT
#   #   carry: [".whl", "data/fashion-mnist"], timeout_s: 600
#
# Environment: DEVICE_PYTHON (the device's Python version, 3.12),
# FASHION_MNIST_ROOT (where the idx .gz files are here).
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${DEVICE_PYTHON:-3.12}
# the versions tools/install.sh gets here, so that both machines run the same
WHEELS=(mmengine==0.10.7 mmpretrain==1.2.0 mmcv-lite==2.1.0 addict==2.4.0 termcolor==3.3.0
        yapf==0.43.0 platformdirs==4.14.8 mat4py==0.6.0 model-index==0.1.11
        ordered-set==4.1.0 importlib-metadata==10.2.0 lazy-importer==0.1.0 zipp==4.1.2)
download() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$@"
}
rm -rf .whl
mkdir -p .whl/opt data/fashion-mnist
download .whl "${WHEELS[@]}"
download .whl/opt 'setuptools>=77.0.3,<82'
SRC=${FASHION_MNIST_ROOT:-/usr/share/datasets/fashion-mnist}
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte \
         t10k-labels-idx1-ubyte; do
  [ -f "$SRC/$f.gz" ] || { echo "gpu_prepare.sh: no $SRC/$f.gz (apt-get install dataset-fashion-mnist, or set FASHION_MNIST_ROOT)" >&2; exit 1; }
  cp "$SRC/$f.gz" data/fashion-mnist/
done
ls .whl .whl/opt
du -sh .whl data/fashion-mnist

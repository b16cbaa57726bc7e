#!/usr/bin/env bash
# Set up nfnet_mm for development and tests: run `bash tools/install.sh` from anywhere
# in the repository (README's set-up command). Idempotent.
#
#  1. pins setuptools>=77.0.3,<82 (torch needs >= 77.0.3; mmengine 0.10 imports
#     pkg_resources, which setuptools 82 removed);
#  2. installs torch==2.14.1 and torchvision==0.29.1 where torch is absent (an existing
#     torch, e.g. a CUDA build of your choice, is kept);
#  3. installs this package editable with the extras in NFNET_MM_EXTRAS (mmcv-lite is
#     skipped where a full mmcv is installed);
#  4. makes Fashion-MNIST available: Debian's dataset-fashion-mnist package where apt can
#     be used (root or password-less sudo); otherwise FashionMNISTIdx needs
#     download=True and a writable data_root.
#
# MMDetection/MMSegmentation (the `downstream` extra) are not installed by default: with
# mmcv-lite only their configs load and our backbone builds, their models need the full
# mmcv (tools/build_mmcv.sh; docs/downstream.md). Opt in with
# NFNET_MM_EXTRAS=mmcv-lite,tests,export,downstream.
#
# Environment: PYTHON (interpreter, default `python`, else `python3`),
# NFNET_MM_EXTRAS (overrides the extras list below).
set -euo pipefail

# The extras to install, in one place (setup.py defines them; `downstream` is opt-in).
DEFAULT_EXTRAS="mmcv-lite,tests,export"
# MMDeploy pins protobuf<=3.20.2 (onnx needs newer); its onnxruntime route never imports
# protobuf, so it is installed without its dependencies, beside the `export` extra.
MMDEPLOY_PIN="mmdeploy==1.3.1"
EXTRAS=${NFNET_MM_EXTRAS:-$DEFAULT_EXTRAS}

TORCH_PIN="torch==2.14.1"
TORCHVISION_PIN="torchvision==0.29.1"
SETUPTOOLS_PIN="setuptools>=77.0.3,<82"
FASHION_MNIST_DIR=/usr/share/datasets/fashion-mnist

cd "$(dirname "$0")/.."

log() { echo "[install.sh] $*"; }
die() { echo "[install.sh] ERROR: $*" >&2; exit 1; }

if [ -n "${PYTHON:-}" ]; then
    :
elif command -v python >/dev/null 2>&1; then
    PYTHON=python
elif command -v python3 >/dev/null 2>&1; then
    PYTHON=python3
else
    die "no python interpreter found (set PYTHON=...)"
fi
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 9), sys.version' \
    || die "$PYTHON is older than Python 3.9"

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
PIP=("$PYTHON" -m pip install -q --progress-bar off)

log "python: $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"

log "pinning $SETUPTOOLS_PIN"
"${PIP[@]}" "$SETUPTOOLS_PIN" || die "could not install $SETUPTOOLS_PIN"

if "$PYTHON" -c 'import torch' >/dev/null 2>&1; then
    log "keeping the installed torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"
else
    log "installing $TORCH_PIN $TORCHVISION_PIN"
    "${PIP[@]}" "$TORCH_PIN" "$TORCHVISION_PIN" "$SETUPTOOLS_PIN" \
        || die "could not install $TORCH_PIN $TORCHVISION_PIN"
fi

# A full mmcv (with compiled ops) and mmcv-lite provide the same package: keep the
# full one where it is installed.
if "$PYTHON" -m pip show mmcv >/dev/null 2>&1; then
    EXTRAS=$(echo ",$EXTRAS," | sed -e 's/,mmcv-lite,/,/g' -e 's/^,//' -e 's/,$//')
    log "full mmcv found: not installing mmcv-lite"
fi

log "installing nfnet_mm (editable) with extras [$EXTRAS]"
SPEC="."
[ -n "$EXTRAS" ] && SPEC=".[$EXTRAS]"
"${PIP[@]}" --no-build-isolation -e "$SPEC" "$SETUPTOOLS_PIN" \
    || die "pip install -e \"$SPEC\" failed"

case ",$EXTRAS," in
    *,export,*)
        log "installing $MMDEPLOY_PIN (--no-deps)"
        "${PIP[@]}" --no-deps "$MMDEPLOY_PIN" || die "could not install $MMDEPLOY_PIN"
        ;;
esac

"$PYTHON" -W ignore - <<'PY' || die "the installed stack does not import"
import mmcv, mmengine, mmpretrain, torch, torchvision  # noqa: F401
import nfnet_mm
print('[install.sh] ok: nfnet_mm', nfnet_mm.__version__, '| torch', torch.__version__,
      '| mmengine', mmengine.__version__, '| mmpretrain', mmpretrain.__version__,
      '| mmcv', mmcv.__version__)
PY

have_fashion_mnist() {
    [ -f "$FASHION_MNIST_DIR/train-images-idx3-ubyte.gz" ] \
        && [ -f "$FASHION_MNIST_DIR/t10k-labels-idx1-ubyte.gz" ]
}

if have_fashion_mnist; then
    log "Fashion-MNIST found in $FASHION_MNIST_DIR"
else
    SUDO=()
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    fi
    if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ ${#SUDO[@]} -gt 0 ]; }; then
        log "installing Debian's dataset-fashion-mnist"
        if ! { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
               && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
                  apt-get install -y -qq dataset-fashion-mnist >/dev/null; }; then
            log "WARNING: apt-get could not install dataset-fashion-mnist"
        fi
    fi
    if have_fashion_mnist; then
        log "Fashion-MNIST installed in $FASHION_MNIST_DIR"
    else
        log "NOTE: Fashion-MNIST is not in $FASHION_MNIST_DIR; to let FashionMNISTIdx" \
            "download it, pass download=True and a writable data_root"
    fi
fi
log "done"

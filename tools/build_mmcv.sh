#!/usr/bin/env bash
# Build the full mmcv 2.1.0 (with its compiled ops, `mmcv._ext`) from source against the
# installed torch, for MMDetection/MMSegmentation models (docs/downstream.md).
#
#   bash tools/build_mmcv.sh --wheel-dir DIR            # only build a wheel into DIR
#   bash tools/build_mmcv.sh --venv DIR [--wheel-dir D] # build, then install it into the
#                                                       # venv DIR (created with
#                                                       # --system-site-packages if absent)
#
# The wheel is built by $PYTHON (its torch and setuptools); nothing is installed into its
# environment unless that environment is named with --venv.
# A venv whose own site-packages hold mmcv-lite is refused unless --replace-lite is given
# (mmcv and mmcv-lite provide the same `mmcv` package). A --system-site-packages venv sees
# the outer mmcv-lite but imports its own mmcv first, and leaves the outer one untouched.
#
# mmcv 2.1.0's setup.py passes -std=c++17, and torch 2.14's headers need C++20: the
# copy of setup.py built here is patched to -std=c++20 (nothing else is changed).
# Without CUDA (or with FORCE_CUDA=0) only the CPU ops are built.
#
# Options: --src TARBALL (an mmcv-2.1.0.tar.gz already on disk, else pip downloads it),
#          --replace-lite, --keep-build (keep the build folder, printed at the end).
# Environment: PYTHON (default `python`), MAX_JOBS (default: all CPUs), FORCE_CUDA,
#              MMCV_CUDA_ARGS, TORCH_CUDA_ARCH_LIST (as for mmcv's own build), TMPDIR.
set -euo pipefail

MMCV_VERSION=2.1.0
log() { echo "[build_mmcv] $*"; }
die() { echo "[build_mmcv] ERROR: $*" >&2; exit 1; }

WHEEL_DIR="" VENV="" SRC="" REPLACE_LITE=0 KEEP_BUILD=0
while [ $# -gt 0 ]; do
    case "$1" in
        --wheel-dir) WHEEL_DIR=${2:?--wheel-dir needs a folder}; shift 2 ;;
        --venv) VENV=${2:?--venv needs a folder}; shift 2 ;;
        --src) SRC=${2:?--src needs a tarball}; shift 2 ;;
        --replace-lite) REPLACE_LITE=1; shift ;;
        --keep-build) KEEP_BUILD=1; shift ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[ -n "$WHEEL_DIR$VENV" ] || die "give --wheel-dir DIR and/or --venv DIR (see --help)"
[ -z "$SRC" ] || [ -f "$SRC" ] || die "--src $SRC: no such file"

PYTHON=${PYTHON:-python}
BUILD=$(mktemp -d "${TMPDIR:-/tmp}/build_mmcv.XXXXXX")
[ "$KEEP_BUILD" = 1 ] || trap 'rm -rf "$BUILD"' EXIT
[ -n "$WHEEL_DIR" ] || WHEEL_DIR=$BUILD/wheels
mkdir -p "$WHEEL_DIR"
WHEEL_DIR=$(cd "$WHEEL_DIR" && pwd)

if [ -n "$VENV" ]; then
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating the venv $VENV (--system-site-packages, from $PYTHON)"
        "$PYTHON" -m venv --system-site-packages "$VENV" || die "could not create $VENV"
    fi
    VENV_PY=$VENV/bin/python
    # mmcv-lite installed in the venv itself (not seen through the system site-packages)?
    LITE_HERE=$("$VENV_PY" - <<'PY'
import importlib.metadata as md, sys
try:
    dist = md.distribution('mmcv-lite')
except md.PackageNotFoundError:
    print(0)
else:
    print(int(str(dist.locate_file('')).startswith(sys.prefix)))
PY
)
    if [ "$LITE_HERE" = 1 ] && [ "$REPLACE_LITE" = 0 ]; then
        die "$VENV has mmcv-lite installed; pass --replace-lite to replace it with mmcv"
    fi
fi

"$PYTHON" -c 'import torch' 2>/dev/null || die "$PYTHON cannot import torch (install it first)"
TORCH=$("$PYTHON" -c 'import torch; print(torch.__version__)')
export MAX_JOBS=${MAX_JOBS:-$(nproc)} MMCV_WITH_OPS=1 FORCE_CUDA=${FORCE_CUDA:-0}
log "mmcv $MMCV_VERSION against torch $TORCH | python $PYTHON | MAX_JOBS=$MAX_JOBS" \
    "FORCE_CUDA=$FORCE_CUDA | build folder $BUILD"

if [ -z "$SRC" ]; then
    log "downloading the mmcv $MMCV_VERSION source"
    "$PYTHON" -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
        -d "$BUILD" "mmcv==$MMCV_VERSION" || die "could not download mmcv==$MMCV_VERSION"
    SRC=$BUILD/mmcv-$MMCV_VERSION.tar.gz
fi
tar -xzf "$SRC" -C "$BUILD" || die "could not unpack $SRC"
SRC_DIR=$BUILD/mmcv-$MMCV_VERSION
[ -f "$SRC_DIR/setup.py" ] || die "$SRC has no mmcv-$MMCV_VERSION/setup.py"
sed -i -e "s/-std=c++17/-std=c++20/g" -e "s#/std:c++17#/std:c++20#g" "$SRC_DIR/setup.py"

log "building the wheel (this takes 20+ minutes on a few CPUs)"
"$PYTHON" -m pip wheel --no-deps --no-build-isolation -w "$WHEEL_DIR" "$SRC_DIR" \
    || die "the mmcv build failed (see above)"
WHEEL=$(ls -t "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl | head -n 1)
log "built $WHEEL"

if [ -n "$VENV" ]; then
    if [ "$LITE_HERE" = 1 ]; then
        "$VENV_PY" -m pip uninstall -q -y mmcv-lite || die "could not remove mmcv-lite"
    fi
    "$VENV_PY" -m pip install -q --no-deps --force-reinstall "$WHEEL" \
        || die "could not install $WHEEL into $VENV"
    "$VENV_PY" -c 'import mmcv.ops, mmcv; print("[build_mmcv] ok: mmcv", mmcv.__version__,
        "with ops, from", mmcv.__file__)' || die "mmcv.ops does not import in $VENV"
fi
[ "$KEEP_BUILD" = 1 ] && log "build folder kept: $BUILD"
log "done"

#!/usr/bin/env bash
# One command that measures everything on a machine with one CUDA GPU.
#
#   bash lab/gpu_report.sh OUT_DIR   # writes OUT_DIR/report.md,
#                                                     # report.json, steps.log
#   bash lab/gpu_report.sh --dry-run # the steps and budgets
#
# Runs the CUDA-only tests, then NFNet-F0 ours vs timm's dm_nfnet_f0 (bf16;
# training at batch 128 and 256, eager and torch.compile against timm eager;
# channels_last on and off; peak memory, MFU, AGC share, SAM(0.2) cost,
# folded inference), F0's memory plan with a measured peak, and
# last the GPU Fashion-MNIST recipe for what time is left (its top-1 so far
# and the time). Every step runs under its own `timeout`: a slow or failed
# step is reported and the next one runs.
# The report puts the GPU targets next to the measurements.
#
# All steps end by GPU_REPORT_DEADLINE_S (default 540 s from the start; a step
# gets at most what is left, none if under 5 s), so the report is written
# within a 10-minute device call. Wheels staged by gpu_prepare.sh in .whl/
# are installed into a temporary folder if MMEngine/MMPretrain are missing.
#
# Options: --quick (tiny arch, batch 2/4, the CPU demo config on 1,024 images
# for 1 epoch, on CPU: a smoke run of the script).
# Environment: FASHION_MNIST_ROOT (default data/fashion-mnist if there, else
# /usr/share/datasets/fashion-mnist), GPU_REPORT_STEPS (comma-separated step
# names to run; default all), GPU_REPORT_STEP_S (replaces every budget),
# GPU_REPORT_DEADLINE_S, BENCH (the benchmark command), PYTHON (python3).
set -u
cd "$(dirname "$0")/.." || exit 1
DRY=0 QUICK=0 OUT=
for arg in "$@"; do
  case $arg in
    --dry-run) DRY=1 ;;
    --quick) QUICK=1 ;;
    -*) echo "gpu_report.sh: unknown option $arg (valid: --dry-run, --quick)" >&2; exit 2 ;;
    *) OUT=$arg ;;
  esac
done
if [ $DRY = 0 ] && [ -z "$OUT" ]; then
  echo "usage: gpu_report.sh OUT_DIR [--quick] | gpu_report.sh --dry-run" >&2; exit 2
fi
PY=${PYTHON:-python3}
B=${BENCH:-$PY -m lab.benchmark}
F0="f0 --dtype bf16 --device cuda" B1=128 B2=256
E="$F0 --steps 20 --warmup 5" C="$F0 --steps 10 --warmup 3"  # eager, compiled
FMCFG=configs/fashion_mnist/nfnet-s_1xb256_fashion-mnist_gpu.py FMQ=
MP="configs/nfnet/nfnet-f0_8xb128_in1k.py --peak-batch 128"  # saved bytes on the CPU
if [ $QUICK = 1 ]; then
  E=--quick C=--quick B1=2 B2=4 MP=--quick FMCFG=configs/fashion_mnist/nfnet-demo_1xb128_fashion-mnist.py
  FMQ="train_cfg.max_epochs=1 train_dataloader.dataset.dataset.indices=1024 val_dataloader.dataset.indices=500"
fi
FM=data/fashion-mnist
[ -f $FM/train-images-idx3-ubyte.gz ] || FM=/usr/share/datasets/fashion-mnist
FM=${FASHION_MNIST_ROOT:-$FM}
W='$W'  # each step's JSON goes to the work folder, named in the command
STEPS=(
  "cuda-tests|60|$PY -m pytest -m cuda -q -p no:cacheprovider tests"
  "eager-b$B1|85|$B $E --batch $B1 --channels-last --sam --out $W/eager-b$B1.json"
  "eager-b$B2|85|$B $E --batch $B2 --channels-last --out $W/eager-b$B2.json"
  "eager-b$B2-contiguous|45|$B $E --batch $B2 --no-agc-ablation --no-inference --out $W/eager-b$B2-contiguous.json"
  "compile-b$B1|110|$B $C --batch $B1 --channels-last --compile --timm-eager --no-agc-ablation --no-inference --out $W/compile-b$B1.json"
  "compile-b$B2|95|$B $C --batch $B2 --channels-last --compile --timm-eager --no-agc-ablation --no-inference --out $W/compile-b$B2.json"
  "memory-plan|30|$PY -m lab.plan_memory $MP --out $W/memory-plan.json"
  "fashion-mnist|80|test -f '$FM/train-images-idx3-ubyte.gz' || { echo no Fashion-MNIST in '$FM': set FASHION_MNIST_ROOT; exit 3; }; $PY tools/train.py $FMCFG --work-dir $W/fmnist --cfg-options 'train_dataloader.dataset.dataset.data_root=$FM' 'val_dataloader.dataset.data_root=$FM' 'test_dataloader.dataset.data_root=$FM' train_cfg.val_interval=1 $FMQ"
)

if [ $DRY = 1 ]; then
  total=0
  for s in "${STEPS[@]}"; do
    IFS='|' read -r name budget cmd <<< "$s"
    printf '%-24s %4s s  %s\n' "$name" "$budget" "$cmd"
    total=$((total + budget))
  done
  echo "total budget: $total s (fashion-mnist last, as time allows)"
  exit 0
fi

mkdir -p "$OUT" || exit 1
W=$(mktemp -d) || exit 1
if [ -d .whl ] && ! $PY -c 'import mmengine, mmpretrain' 2> /dev/null; then
  echo "== installing the staged wheels in .whl/ into $W/site"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$W/site" .whl/*.whl || exit 1
  if ! $PY -c 'import pkg_resources' 2> /dev/null; then  # setuptools >= 82 there
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$W/site" .whl/opt/*.whl || exit 1
  fi
  export PYTHONPATH="$W/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export W PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DEADLINE=${GPU_REPORT_DEADLINE_S:-540}
: > "$W/steps.tsv"
: > "$OUT/steps.log"
for s in "${STEPS[@]}"; do
  IFS='|' read -r name budget cmd <<< "$s"
  if [ -n "${GPU_REPORT_STEPS:-}" ] && [[ ",$GPU_REPORT_STEPS," != *",$name,"* ]]; then
    continue
  fi
  budget=${GPU_REPORT_STEP_S:-$budget}
  left=$((DEADLINE - SECONDS))
  if [ $left -lt 5 ]; then
    printf '%s\t%s\t-1\t0\n' "$name" "$budget" >> "$W/steps.tsv"
    echo "== $name: skipped, the deadline ($DEADLINE s) is reached" | tee -a "$OUT/steps.log"
    continue
  fi
  [ $left -lt $budget ] && budget=$left
  echo "== $name (budget $budget s): $cmd"
  start=$SECONDS
  timeout --kill-after=5 "$budget" bash -c "$cmd" > "$W/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$budget" "$rc" "$((SECONDS - start))" >> "$W/steps.tsv"
  { echo "== $name: exit $rc after $((SECONDS - start)) s"; tail -n 40 "$W/$name.log"; } >> "$OUT/steps.log"
  tail -n 3 "$W/$name.log"
done
$PY -m lab.benchmarks.report "$W" "$OUT" || { echo "report failed" >&2; exit 1; }
echo "wrote $OUT/report.md"

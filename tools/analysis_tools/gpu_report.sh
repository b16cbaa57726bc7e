#!/usr/bin/env bash
# One command that measures everything on a machine with one CUDA GPU.
#
#   bash tools/analysis_tools/gpu_report.sh OUT_DIR   # writes OUT_DIR/report.md,
#                                                     # report.json, steps.log
#   bash tools/analysis_tools/gpu_report.sh --dry-run # the steps and budgets
#
# Runs the CUDA-only tests, then NFNet-F0 ours vs timm's dm_nfnet_f0 (bf16;
# training at batch 128 and 256, eager and torch.compile against timm eager;
# channels_last on and off; peak memory, MFU, AGC share, SAM(0.2) cost,
# folded inference), 8 minutes in all, and last the GPU Fashion-MNIST recipe
# for what time is left (its top-1 so far and the time). Every step runs under
# its own `timeout`: a slow or failed step is reported and the next one runs.
# The report puts the GPU targets next to the measurements.
#
# Options: --quick (tiny arch, batch 2/4, on CPU: a smoke run of the script).
# Environment: FASHION_MNIST_ROOT (default /usr/share/datasets/fashion-mnist),
# GPU_REPORT_STEPS (comma-separated step names to run; default all),
# GPU_REPORT_STEP_S (replaces every budget), BENCH (the benchmark command).
set -u
cd "$(dirname "$0")/../.." || exit 1
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
B=${BENCH:-python tools/analysis_tools/benchmark.py}
F0="f0 --dtype bf16 --device cuda" B1=128 B2=256
E="$F0 --steps 20 --warmup 5" C="$F0 --steps 10 --warmup 3"  # eager, compiled
[ $QUICK = 1 ] && E=--quick C=--quick B1=2 B2=4
FM=${FASHION_MNIST_ROOT:-/usr/share/datasets/fashion-mnist}
W='$W'  # each step's JSON goes to the work folder, named in the command
STEPS=(
  "cuda-tests|60|python -m pytest -m cuda -q -p no:cacheprovider tests"
  "eager-b$B1|85|$B $E --batch $B1 --channels-last --sam --out $W/eager-b$B1.json"
  "eager-b$B2|85|$B $E --batch $B2 --channels-last --out $W/eager-b$B2.json"
  "eager-b$B2-contiguous|45|$B $E --batch $B2 --no-agc-ablation --no-inference --out $W/eager-b$B2-contiguous.json"
  "compile-b$B1|110|$B $C --batch $B1 --channels-last --compile --timm-eager --no-agc-ablation --no-inference --out $W/compile-b$B1.json"
  "compile-b$B2|95|$B $C --batch $B2 --channels-last --compile --timm-eager --no-agc-ablation --no-inference --out $W/compile-b$B2.json"
  "fashion-mnist|80|test -f $FM/train-images-idx3-ubyte.gz || { echo no Fashion-MNIST in $FM: set FASHION_MNIST_ROOT; exit 3; }; python tools/train.py configs/fashion_mnist/nfnet-s_1xb256_fashion-mnist_gpu.py --work-dir $W/fmnist --cfg-options train_dataloader.dataset.data_root=$FM val_dataloader.dataset.data_root=$FM test_dataloader.dataset.data_root=$FM train_cfg.val_interval=1"
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
export W PYTHONUNBUFFERED=1
: > "$W/steps.tsv"
: > "$OUT/steps.log"
for s in "${STEPS[@]}"; do
  IFS='|' read -r name budget cmd <<< "$s"
  if [ -n "${GPU_REPORT_STEPS:-}" ] && [[ ",$GPU_REPORT_STEPS," != *",$name,"* ]]; then
    continue
  fi
  budget=${GPU_REPORT_STEP_S:-$budget}
  echo "== $name (budget $budget s): $cmd"
  start=$SECONDS
  timeout --kill-after=5 "$budget" bash -c "$cmd" > "$W/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$budget" "$rc" "$((SECONDS - start))" >> "$W/steps.tsv"
  { echo "== $name: exit $rc after $((SECONDS - start)) s"; tail -n 40 "$W/$name.log"; } >> "$OUT/steps.log"
  tail -n 3 "$W/$name.log"
done
python -m nfnet_mm.benchmarks.report "$W" "$OUT" || { echo "report failed" >&2; exit 1; }
echo "wrote $OUT/report.md"

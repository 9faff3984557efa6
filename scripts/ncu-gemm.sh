#!/usr/bin/env bash
# Profiles GEMM kernels with Nsight Compute on a GPU machine, one kernel launch per (shape, kernel
# regex), at the GPU's own clocks (not ncu's locked base clocks, so durations compare with `fp4kit
# bench`). Usage: scripts/ncu-gemm.sh OUTDIR FP4KIT_BINARY SHAPE:KERNEL_REGEX[:SKIP] ...
# e.g. scripts/ncu-gemm.sh $OUT build/gpu/fp4kit 1x28672x8192:smallm_run 16x28672x8192:sm90_smallm
# Each profile goes to OUTDIR/ncu_<n>.txt: speed of light, scheduler and warp-state sections,
# instructions executed and DRAM bytes. SKIP (default 3) skips the first matching launches (warm-up).
set -uo pipefail
out="${1:?usage: scripts/ncu-gemm.sh OUTDIR FP4KIT_BINARY SHAPE:KERNEL_REGEX[:SKIP] ...}"
bin="${2:?FP4KIT_BINARY}"
shift 2
mkdir -p "$out"
ncu="$(command -v ncu || echo /usr/local/cuda/bin/ncu)"
n=0
for spec in "$@"; do
  IFS=: read -r shape regex skip <<<"$spec"
  n=$((n + 1))
  "$ncu" --clock-control none -k "regex:$regex" --launch-skip "${skip:-3}" -c 1 \
    --section SpeedOfLight --section SchedulerStats --section WarpStateStats --section LaunchStats --section Occupancy \
    --metrics smsp__inst_executed.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_bytes.sum \
    "$bin" bench gemm --shapes "$shape" --iters 5 >"$out/ncu_$n.txt" 2>&1
  echo "== $spec: exit $? -> ncu_$n.txt"
done

#!/usr/bin/env bash
# Times several builds of libfp4kit against each other in one call on a GPU machine: the same
# `fp4kit bench gemm` run once per library folder, in the order given (name one twice to see the
# run-to-run spread). Build the variants here, copy each libfp4kit.so.0 into its own folder and
# carry the folders and the CLI along. Usage:
#   scripts/gemm-ab.sh OUTDIR FP4KIT_BINARY LIBDIR [LIBDIR ...]
# e.g. scripts/gemm-ab.sh $OUT build/me/fp4kit build/me/base build/me/new build/me/base build/me/new
# SHAPES (default the four training shapes) and ITERS (default 30) pass on to the bench. Each run's
# output goes to OUTDIR/bench_<n>_<folder>.txt; the cuBLAS BF16 and fp4kit W4A4 medians are printed
# last. A variant whose output fails the bench's check is still timed (it says MISMATCH): that is
# how bounds (a variant skipping work) are measured.
set -uo pipefail
out="${1:?usage: scripts/gemm-ab.sh OUTDIR FP4KIT_BINARY LIBDIR [LIBDIR ...]}"
bin="${2:?FP4KIT_BINARY}"
shift 2
[ $# -ge 1 ] || { echo "gemm-ab: name at least one library folder" >&2; exit 2; }
mkdir -p "$out"
shapes="${SHAPES:-8192x8192x8192,16384x4096x4096,4096x14336x4096,16384x4096x14336}"
n=0
for dir in "$@"; do
  [ -e "$dir/libfp4kit.so.0" ] || { echo "gemm-ab: $dir/libfp4kit.so.0 is missing" >&2; exit 2; }
  n=$((n + 1))
  log="$out/bench_${n}_$(basename "$dir").txt"
  LD_LIBRARY_PATH="$(cd "$dir" && pwd)" timeout 300 "$bin" bench gemm --shapes "$shapes" --iters "${ITERS:-30}" >"$log" 2>&1
  echo "== $n: $dir (exit $?)"
  grep -E "bf16 cuBLAS bf16: median|w4a4 [a-z0-9_]+: median" "$log" | sed 's/^bench gemm: //' | cut -c1-130
done

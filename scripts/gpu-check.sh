#!/usr/bin/env bash
# Builds fp4kit on a GPU machine, runs every test (CPU and GPU), compute-sanitizer (memcheck and
# racecheck) on the GPU tests, the demo and the benchmarks, and writes OUTDIR/report.json with the
# logs beside it. Usage: scripts/gpu-check.sh OUTDIR
# Dependencies the machine lacks come from .deps/ (see scripts/gpu-deps.sh).
# For quick iterations on one kernel: FP4KIT_ARCHS=90a builds only that architecture, and
# GPU_CHECK_ONLY=bench runs the build and the benchmarks only (a full run is what counts).
set -uo pipefail
out="${1:?usage: scripts/gpu-check.sh OUTDIR}"
mkdir -p "$out"
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build/gpu"
jobs="$(nproc)"
extra=()
if [ -n "${FP4KIT_ARCHS:-}" ]; then
  extra+=("-DCMAKE_CUDA_ARCHITECTURES=$FP4KIT_ARCHS")
fi
if [ -d "$root/.deps/root" ]; then
  extra+=("-DCMAKE_PREFIX_PATH=$root/.deps/root/usr" "-DFP4KIT_GTEST_SOURCE_DIR=$root/.deps/root/usr/src/googletest")
fi

step() {  # step NAME COMMAND...: runs, logs to OUTDIR/NAME.log, records the exit status
  local name="$1"; shift
  local t0=$SECONDS
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "$name $rc $((SECONDS - t0))" >>"$out/steps.txt"
  echo "== $name: exit $rc ($((SECONDS - t0)) s)"
  return $rc
}

: >"$out/steps.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$out/device.txt" 2>&1
step configure cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DFP4KIT_CUDA=ON "${extra[@]}" &&
  step build cmake --build "$build" -j "$jobs"
built=$?
if [ $built -eq 0 ] && [ "${GPU_CHECK_ONLY:-}" = bench ]; then
  step bench sh -c '"$0" bench quantize --json >"$1"' "$build/fp4kit" "$out/bench.json"
  step bench_rht sh -c '"$0" bench rht --json >"$1"' "$build/fp4kit" "$out/bench_rht.json"
  step bench_gemm sh -c '"$0" bench gemm --json >"$1"' "$build/fp4kit" "$out/bench_gemm.json"
elif [ $built -eq 0 ]; then
  # Four at a time: the CPU references of the GPU tests are the long part, and the whole script
  # must stay under the device tool's 10 minutes per command.
  step ctest ctest --test-dir "$build" -j 4 --output-on-failure --output-junit "$out/ctest.xml"
  # The sanitizers slow kernels 10-100x: run them on every kernel and mode at the small shapes (the
  # RHT's too: GpuRhtShape runs the fused cast and the unfused fallback, under every budget).
  sanitized='DeviceCodecs.*:DeviceInfoOnGpu.*:GpuTest.*:*GpuQuantizeShape*/1x16:*GpuQuantizeShape*/17x32:*GpuQuantizeShape*/128x128'
  sanitized+=':*GpuRhtShape*/1x16:*GpuRhtShape*/17x32:*GpuRhtShape*/128x128:GpuGemm.SmallShapesForSanitizers'
  sanitized+=':GpuGemmSmallM.NanScaleBlocksMakeExactlyTheirOutputsNan'
  step memcheck compute-sanitizer --tool memcheck --error-exitcode 1 "$build/tests/fp4kit_gpu_tests" --gtest_filter="$sanitized"
  step racecheck compute-sanitizer --tool racecheck --error-exitcode 1 "$build/tests/fp4kit_gpu_tests" \
    --gtest_filter="*GpuQuantizeShape*/17x32:*GpuRhtShape*/17x32:GpuTest.*:GpuGemm.SmallShapesForSanitizers"
  step demo "$build/fp4kit" demo --json
  step info "$build/fp4kit" info --json
  # The benchmarks: each one's JSON (stdout) to bench.json / bench_rht.json / bench_gemm.json, its
  # progress lines (stderr) to its log. A missed target still exits 0; a result that differs from
  # the CPU reference (bench gemm: from the portable exact GEMM, beyond the §7 bound) exits 1.
  step bench sh -c '"$0" bench quantize --json >"$1"' "$build/fp4kit" "$out/bench.json"
  step bench_rht sh -c '"$0" bench rht --json >"$1"' "$build/fp4kit" "$out/bench_rht.json"
  step bench_gemm sh -c '"$0" bench gemm --json >"$1"' "$build/fp4kit" "$out/bench_gemm.json"
fi

python3 - "$out" <<'PY'
import json, pathlib, re, sys, xml.etree.ElementTree as ET
out = pathlib.Path(sys.argv[1])
report = {"device": (out / "device.txt").read_text().strip(), "steps": {}}
for line in (out / "steps.txt").read_text().split("\n"):
    if line.strip():
        name, rc, secs = line.split()
        report["steps"][name] = {"exit": int(rc), "seconds": int(secs)}
junit = out / "ctest.xml"
if junit.exists():
    suite = ET.parse(junit).getroot()
    cases = suite.findall("testcase")
    status = lambda c: c.get("status") or ("failed" if c.find("failure") is not None else "run")
    report["tests"] = {
        "total": len(cases),
        "failed": [c.get("name") for c in cases if status(c) == "fail" or c.find("failure") is not None],
        "skipped": [c.get("name") for c in cases if status(c) in ("notrun", "disabled") or c.find("skipped") is not None],
    }
demo = out / "demo.log"
if demo.exists():
    try:
        report["demo"] = json.loads(demo.read_text().strip().splitlines()[-1])
    except Exception as e:
        report["demo_error"] = str(e)
info = out / "info.log"  # renamed to info.json below
if info.exists():
    try:
        report["info_device"] = json.loads(info.read_text())["device"]
    except Exception as e:
        report["info_error"] = str(e)
benches = {"bench": "bench", "bench_rht": "bench rht"}  # step (and report key) -> title of its lines
for key in (*benches, "bench_gemm"):
    bench = out / f"{key}.json"  # kept beside report.json
    if bench.exists():
        try:
            report[key] = json.loads(bench.read_text())
        except Exception as e:
            report[f"{key}_error"] = f"{e} (see {key} in logs.txt)"
report["ok"] = all(s["exit"] == 0 for s in report["steps"].values())
(out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
# The device tool returns at most 8 files: keep report.json, info.json, bench.json, bench_rht.json,
# bench_gemm.json, ctest.xml, device.txt and one logs.txt holding every step's log (8).
if info.exists():
    info.rename(out / "info.json")
with open(out / "logs.txt", "w") as logs:
    for name in report["steps"]:
        log = out / f"{name}.log"
        if log.exists():
            logs.write(f"===== {name} (exit {report['steps'][name]['exit']}) =====\n{log.read_text()}\n")
            log.unlink()
(out / "steps.txt").unlink()
print(json.dumps({k: v for k, v in report.items() if k not in ("info_device", *benches, "bench_gemm")}, indent=2))
for key, title in benches.items():  # one line per measurement: the reply carries only the end of the output
    if key not in report:
        continue
    b = report[key]
    print(f"{title}: {b['device']['name']}, copy {b['copy_gbps']:.1f} GB/s")
    for r in b["results"]:
        # A measurement without a target (bench rht's unfused fallback) is reported, not judged.
        target = "no target" if r.get("target") is None else \
            f"target {r['target']:.2f} {'PASS' if r['meets_target'] else 'FAIL'}"
        print(f"  {r['shape'][0]}x{r['shape'][1]:<6} {r['mode']:<23} {r['median_us']:9.1f} us {r['gbps']:8.1f} GB/s "
              f"{r['ratio']:.3f} of copy ({target}) {r['verified']} {r['kernel']}")
if "bench_gemm" in report:  # per shape: the ceilings and target, then each fp4kit line that ran
    b = report["bench_gemm"]
    print(f"bench gemm: {b['device']['name']}, cuBLASLt {b['device']['cublaslt_version']}")
    for r in b["results"]:
        s, c, t = r["shape"], r["ceiling"], r["target"]
        fp8 = c["cublaslt_fp8"]
        fp8 = f"{fp8['median_us']:.1f} us" if fp8.get("available") else "n/a"
        value = "-" if t["value"] is None else f"{t['value']:.2f}x"
        read = c.get("nvfp4_weight_read")  # decode shapes: the weight stream's ceiling
        read = f", B read {read['median_us']:.1f} us ({read['ratio_to_cublas_bf16']:.2f}x)" if read else ""
        print(f"  {s['m']}x{s['n']}x{s['k']}: bf16 {c['cublas_bf16']['median_us']:.1f} us "
              f"({c['cublas_bf16']['tflops']:.0f} TFLOP/s), fp8 {fp8}{read}; target {value} "
              f"{'met' if t['met'] else 'MISSED'} {t['note']}")
        ran = [x for x in r["fp4kit"] if x["ran"]]
        for x in ran:
            check = "MISMATCH" if x["check"].startswith("MISMATCH") else x["check"][:20]
            print(f"    {x['mode']:<5} {x['median_us']:9.1f} us {x['tflops']:6.0f} TFLOP/s "
                  f"{x['ratio_to_cublas_bf16']:5.2f}x {check:<9} {x['kernel']}")
        print(f"    ({len(r['fp4kit']) - len(ran)} not run; selected: "
              + ", ".join(f"{m} {x.get('kernel', '')}" for m, x in r["selected"].items()) + ")")
PY

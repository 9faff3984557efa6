// tools/cli/cmd_bench.cpp: `fp4kit bench quantize` and `fp4kit bench rht`: how fast
// fp4kit::quantize_into runs on a CUDA GPU, next to the ceiling a memory-bound kernel has on that GPU,
// measured in the same run. `quantize` times the plain cast (both directions with RNE and with SR,
// rowwise only); `rht` times the cast whose columnwise output goes through the random Hadamard
// transform, three ways: fused under the device's full shared-memory budget, fused under a 101376-byte
// budget, and the unfused fallback (reported beside them, without a target).
//
// The ceiling is the device-to-device copy bandwidth (cudaMemcpyAsync of max(1 GiB, 4 x L2) bytes,
// read + write counted). Each quantization is timed with CUDA events after warm-up, on inputs that
// rotate through enough distinct buffers to exceed twice the L2, into a preallocated NVFP4 tensor
// (no allocation is timed). Each run is gated: the stream is held by a host function until the
// run's launches are queued, so the events time the GPU and not the host's launch overhead.
// Results are checked while benchmarking: the output is poisoned before the first run, and the last
// run's output is compared with the CPU reference byte for byte (first shape, up to 64 Mi elements)
// or by its amax and non-finite counts (the others).
//
// Bytes of one run: the input read twice (the amax pass, then the cast) plus every output byte
// (data + scales + amax of each present direction) written once. A missed target is a measurement,
// not an error: the exit status is 0 and the output says so; a result that differs from the CPU
// reference is an error (exit 1).
//
// `gemm` times every CUDA GEMM variant of the build (forced in turn, W4A4 and W4A16) and plain
// selection, each beside the ceilings measured in the same run: cuBLASLt BF16 and FP8 GEMMs of the
// same shape. Each GEMM run is timed alone (an L2 flush before it, outside its events; the same
// gate), and every fp4kit output is checked against the portable exact GEMM's within the NUMERICS
// §7 bound (exit 1 otherwise). See the "bench gemm" section below.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "commands.hpp"
#include "format.hpp"
#include "fp4kit/dispatch.hpp"
#include "fp4kit/error.hpp"
#include "fp4kit/formats.hpp"
#include "fp4kit/ops.hpp"
#include "fp4kit/tensor.hpp"

#if defined(FP4KIT_HAVE_CUDA)
#include <cublasLt.h>
#include <cuda_runtime.h>

#include "cuda/common/read_ceiling.hpp"
#endif

namespace fp4kit::cli {

namespace {

using Json = nlohmann::ordered_json;  // key order as written: stable output

constexpr int kMinTimedRuns = 20;  // median and min of at least this many runs
constexpr uint64_t kSrSeed = 0x5EED5EED5EED5EEDull;  // fixed; sr_offset is the run index
// The per-block opt-in shared memory of sm_86, sm_89 and sm_12x GPUs (src/dispatch/profiles.cpp):
// under this budget the H100 runs the configuration those GPUs run.
constexpr int64_t kSmallSmemBudget = 101376;
constexpr const char* kUnfusedRhtVariant = "sm80_rht_unfused_b16";

struct Shape {
  int64_t rows = 0;
  int64_t cols = 0;
};

struct BenchArgs {
  bool json = false;
  int iters = 50;
  std::string shapes = "8192x8192,16384x4096,4096x14336";
};

// Parses "RxC,RxC,...": positive integers, C a multiple of 16 (the rowwise blocks run along C).
// Returns "" when valid, else the reason.
std::string parse_shapes(const std::string& text, std::vector<Shape>& shapes) {
  const std::string usage = "expected RxC[,RxC...] (positive integers, C a multiple of 16), e.g. 8192x8192,4096x14336";
  shapes.clear();
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const std::size_t x = item.find('x');
    int64_t dims[2] = {0, 0};
    bool ok = x != std::string::npos;
    for (int d = 0; ok && d < 2; ++d) {
      const std::string part = d == 0 ? item.substr(0, x) : item.substr(x + 1);
      const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), dims[d]);
      // 2^31 per dimension keeps rows * cols * 2 bytes far from overflow.
      ok = !part.empty() && ec == std::errc() && end == part.data() + part.size() && dims[d] > 0 &&
           dims[d] <= (int64_t{1} << 31);
    }
    if (!ok) return usage + "; got '" + text + "' ('" + item + "' is not RxC)";
    if (dims[1] % 16 != 0) {
      return usage + "; got '" + text + "' ('" + item + "': " + std::to_string(dims[1]) + " is not a multiple of 16)";
    }
    shapes.push_back({dims[0], dims[1]});
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return "";
}

// --- bench gemm: shapes, targets ------------------------------------------------------------------

struct GemmShape {
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;
};

// Training shapes of Llama-class layers, then decode (M tokens in flight) against two weights.
constexpr const char* kDefaultGemmShapes =
    "8192x8192x8192,16384x4096x4096,4096x14336x4096,16384x4096x14336,"
    "1x8192x8192,16x8192x8192,64x8192x8192,1x28672x8192,16x28672x8192,64x28672x8192";
constexpr int64_t kDecodeMaxM = 64;          // M up to this is a decode shape, judged by speedup
constexpr double kTrainingTarget = 0.90;     // the fused sm_90a kernel's W4A4 throughput / cuBLAS BF16's
constexpr double kDecodeTarget = 2.5;        // the fastest fp4kit GEMM's speedup over cuBLAS BF16
constexpr const char* kFusedGemmVariant = "sm90_gemm_nvfp4";
constexpr const char* kReferenceGemmVariant = "gemm_dequant_cublaslt";  // the check's reference output
constexpr int kMinGemmIters = 5;
constexpr double kGemmTimeBudgetUs = 200e3;  // a measurement's timed runs stop near this much GPU time
constexpr int kGemmMinRuns = 10;             // ... but never fewer than this (or --iters, if lower)

struct GemmBenchArgs {
  bool json = false;
  int iters = 100;  // at most; fewer where they would take longer than the time budget (bench gemm --help)
  std::string shapes = kDefaultGemmShapes;
};

// Parses "MxNxK,MxNxK,...": positive integers, N and K multiples of 16 (K: the NVFP4 blocks; N: the
// CUDA GEMMs' rule). Returns "" when valid, else the reason.
std::string parse_gemm_shapes(const std::string& text, std::vector<GemmShape>& shapes) {
  const std::string usage =
      "expected MxNxK[,MxNxK...] (positive integers, N and K multiples of 16), e.g. 8192x8192x8192,16x28672x8192";
  shapes.clear();
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    int64_t dims[3] = {0, 0, 0};
    bool ok = true;
    std::size_t from = 0;
    for (int d = 0; ok && d < 3; ++d) {
      const std::size_t x = d < 2 ? item.find('x', from) : std::string::npos;
      if (d < 2 && x == std::string::npos) {
        ok = false;
        break;
      }
      const std::string part = item.substr(from, x == std::string::npos ? std::string::npos : x - from);
      const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), dims[d]);
      // 2^31 per dimension keeps every product of two in int64 bytes.
      ok = !part.empty() && ec == std::errc() && end == part.data() + part.size() && dims[d] > 0 &&
           dims[d] <= (int64_t{1} << 31);
      from = x + 1;
    }
    if (!ok) return usage + "; got '" + text + "' ('" + item + "' is not MxNxK)";
    for (int d = 1; d < 3; ++d) {
      if (dims[d] % 16 != 0) {
        return usage + "; got '" + text + "' ('" + item + "': " + (d == 1 ? "N = " : "K = ") + std::to_string(dims[d]) +
               " is not a multiple of 16)";
      }
    }
    shapes.push_back({dims[0], dims[1], dims[2]});
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return "";
}

// One measurement per shape: the call it times, the context that call runs under, and its target.
struct Mode {
  std::string name;
  QuantParams params;
  std::optional<int64_t> smem_budget;  // caps the shared-memory budget; none: the device's opt-in limit
  std::string force_kernel;            // the variant the context forces; "": selection chooses
  std::optional<double> target;        // fraction of the copy bandwidth; none: reported, not judged
};

// A `bench` subcommand: its name (in titles, progress lines and errors) and its measurements.
struct Benchmark {
  std::string command;
  std::vector<Mode> modes;
};

QuantParams cast_params(Direction direction, Rounding rounding) {
  QuantParams p;
  p.direction = direction;
  p.block = BlockScaling::k1D;
  p.rounding = rounding;
  p.sr_seed = kSrSeed;
  return p;
}

// Targets from the issues that asked for each benchmark.
Benchmark quantize_benchmark() {
  return {"bench quantize",
          {{"rowwise+columnwise rne", cast_params(Direction::kBoth, Rounding::kNearest), {}, "", 0.80},
           {"rowwise+columnwise sr", cast_params(Direction::kBoth, Rounding::kStochastic), {}, "", 0.70},
           {"rowwise rne", cast_params(Direction::kRowwise, Rounding::kNearest), {}, "", 0.80}}};
}

Benchmark rht_benchmark() {
  QuantParams p = cast_params(Direction::kBoth, Rounding::kNearest);
  p.rht = true;
  p.rht_mask = kDefaultRhtMask;
  return {"bench rht",
          {{"fused", p, {}, "", 0.75},
           {"fused @" + std::to_string(kSmallSmemBudget) + " B", p, kSmallSmemBudget, "", 0.65},
           {"unfused", p, {}, kUnfusedRhtVariant, {}}}};
}

[[noreturn]] void throw_no_gpu(const std::string& command, const std::string& why) {
  throw Error(ErrorCode::kUnsupported, command + ": the benchmark needs a CUDA GPU, and " + why,
              "run scripts/gpu-check.sh on a GPU machine (it builds with -DFP4KIT_CUDA=ON and runs the benchmark)");
}

#if defined(FP4KIT_HAVE_CUDA)

constexpr int kWarmupRuns = 10;  // module loading, first touch and clock ramp stay out of the numbers
constexpr int64_t kMaxBytesCheckElems = int64_t{64} << 20;  // the CPU reference takes seconds per 64 Mi elements

// The Problem quantize_into builds for this call (src/dispatch/ops.cpp): what selection sees.
Problem quantize_problem(const Shape& s, const QuantParams& params) {
  Problem p;
  p.op = OpKind::kQuantize;
  p.rows = s.rows;
  p.cols = s.cols;
  p.in_dtype = DType::kBF16;
  p.params = params;
  return p;
}

std::string shape_text(const Shape& s) { return std::to_string(s.rows) + "x" + std::to_string(s.cols); }

// --- CUDA plumbing --------------------------------------------------------------------------------

void check_cuda(cudaError_t status, const char* call) {
  if (status != cudaSuccess) {
    throw Error(ErrorCode::kCudaError, std::string(call) + " failed: " + cudaGetErrorString(status),
                "check the GPU with nvidia-smi; a failed launch before this call can also surface here");
  }
}
#define FP4KIT_BENCH_CUDA(call) check_cuda((call), #call)

class Stream {
 public:
  // A blocking stream: it orders after the legacy default stream, where Buffer and
  // Nvfp4Tensor::allocate zero their memory.
  Stream() { FP4KIT_BENCH_CUDA(cudaStreamCreate(&stream_)); }
  ~Stream() { cudaStreamDestroy(stream_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const noexcept { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

class Events {
 public:
  explicit Events(int n) : events_(static_cast<std::size_t>(n), nullptr) {
    for (cudaEvent_t& e : events_) FP4KIT_BENCH_CUDA(cudaEventCreate(&e));
  }
  ~Events() {
    for (cudaEvent_t e : events_) {
      if (e != nullptr) cudaEventDestroy(e);
    }
  }
  Events(const Events&) = delete;
  Events& operator=(const Events&) = delete;
  cudaEvent_t operator[](int i) const { return events_[static_cast<std::size_t>(i)]; }

 private:
  std::vector<cudaEvent_t> events_;
};

// Holds a stream with a host function until the host has enqueued one run, so that the run's
// launches are queued back to back behind its start event: the events then time the GPU, not the
// host's launch overhead (which would dominate small shapes). NOTE: a hold gives up after kMaxHold
// so that a run that blocks the host on the stream (a hidden synchronization) cannot deadlock; such
// a run's time includes host work, and timeouts() counts them.
class StreamGate {
 public:
  explicit StreamGate(cudaStream_t stream) : stream_(stream) {}
  ~StreamGate() {
    released_.store(UINT64_MAX, std::memory_order_release);
    cudaStreamSynchronize(stream_);  // the pending holds point into tickets_
  }
  StreamGate(const StreamGate&) = delete;
  StreamGate& operator=(const StreamGate&) = delete;

  void hold() {
    tickets_.push_back({this, ++issued_});  // a deque: earlier tickets keep their addresses
    FP4KIT_BENCH_CUDA(cudaLaunchHostFunc(stream_, &StreamGate::wait, &tickets_.back()));
  }
  void release() { released_.store(issued_, std::memory_order_release); }
  int timeouts() const noexcept { return timeouts_.load(); }

 private:
  static constexpr std::chrono::milliseconds kMaxHold{20};
  struct Ticket {
    StreamGate* gate;
    uint64_t number;
  };
  static void CUDART_CB wait(void* arg) {
    const Ticket& t = *static_cast<const Ticket*>(arg);
    const auto deadline = std::chrono::steady_clock::now() + kMaxHold;
    while (t.gate->released_.load(std::memory_order_acquire) < t.number) {
      if (std::chrono::steady_clock::now() > deadline) {
        t.gate->timeouts_.fetch_add(1);
        return;
      }
      std::this_thread::yield();
    }
  }

  cudaStream_t stream_;
  std::deque<Ticket> tickets_;
  uint64_t issued_ = 0;
  std::atomic<uint64_t> released_{0};
  std::atomic<int> timeouts_{0};
};

struct Timing {
  double median_us = 0;
  double min_us = 0;
  int runs = 0;
  int host_bound_runs = 0;  // timed runs whose gate timed out (see StreamGate)
};

// Runs run(i) for i = 0 .. warmup + iters - 1 on `stream` (i is the run index: the SR offset),
// timing the last `iters` with one pair of events each. before(i), when given, is enqueued ahead of
// run i and outside its events (bench gemm's L2 flush).
template <typename Run, typename Before>
Timing time_runs(cudaStream_t stream, int warmup, int iters, const Run& run, const Before& before) {
  Events start(iters), stop(iters);
  StreamGate gate(stream);
  for (int i = 0; i < warmup; ++i) {
    gate.hold();
    before(i);
    run(i);
    gate.release();
  }
  FP4KIT_BENCH_CUDA(cudaStreamSynchronize(stream));
  const int warmup_timeouts = gate.timeouts();
  for (int i = 0; i < iters; ++i) {
    gate.hold();
    before(warmup + i);
    FP4KIT_BENCH_CUDA(cudaEventRecord(start[i], stream));
    run(warmup + i);
    FP4KIT_BENCH_CUDA(cudaEventRecord(stop[i], stream));
    gate.release();
  }
  FP4KIT_BENCH_CUDA(cudaStreamSynchronize(stream));
  FP4KIT_BENCH_CUDA(cudaGetLastError());
  std::vector<double> us(static_cast<std::size_t>(iters));
  for (int i = 0; i < iters; ++i) {
    float ms = 0;
    FP4KIT_BENCH_CUDA(cudaEventElapsedTime(&ms, start[i], stop[i]));
    us[static_cast<std::size_t>(i)] = 1e3 * ms;
  }
  std::sort(us.begin(), us.end());
  const std::size_t n = us.size();
  Timing t;
  t.median_us = n % 2 == 1 ? us[n / 2] : 0.5 * (us[n / 2 - 1] + us[n / 2]);
  t.min_us = us.front();
  t.runs = iters;
  t.host_bound_runs = gate.timeouts() - warmup_timeouts;
  return t;
}

template <typename Run>
Timing time_runs(cudaStream_t stream, int warmup, int iters, const Run& run) {
  return time_runs(stream, warmup, iters, run, [](int) {});
}

// --- Inputs ---------------------------------------------------------------------------------------

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Input buffer `index` of a shape, as BF16 bits: every value finite, normal and non-zero. Each
// 16-element block gets its own magnitude 2^[-8, 7] (so the blocks' E4M3 scales differ, some far
// below the tensor amax), and each element a random sign, mantissa and exponent 0..3 below the
// block's: the same bytes on every machine.
void fill_input(std::vector<uint16_t>& out, const Shape& s, int index) {
  const uint64_t seed = splitmix64((static_cast<uint64_t>(s.rows) << 40) ^ (static_cast<uint64_t>(s.cols) << 8) ^
                                   static_cast<uint64_t>(index));
  const int64_t n = s.rows * s.cols;
  out.resize(static_cast<std::size_t>(n));
  for (int64_t block = 0; block * 16 < n; ++block) {
    const int block_exp = static_cast<int>(splitmix64(seed ^ (static_cast<uint64_t>(block) << 1)) % 16) - 8;
    const int64_t end = std::min<int64_t>(n, block * 16 + 16);
    for (int64_t i = block * 16; i < end; ++i) {
      const uint64_t h = splitmix64(seed + static_cast<uint64_t>(i) * 0xD1B54A32D192ED03ull);
      const uint32_t sign = static_cast<uint32_t>(h & 1u);
      const uint32_t mant = static_cast<uint32_t>((h >> 1) & 0x7Fu);
      const int exp = block_exp - static_cast<int>((h >> 8) & 3u);
      out[static_cast<std::size_t>(i)] = static_cast<uint16_t>((sign << 15) | (static_cast<uint32_t>(127 + exp) << 7) | mant);
    }
  }
}

// --- Checking ---------------------------------------------------------------------------------------

std::vector<Direction> present_directions(const QuantParams& params) {
  std::vector<Direction> d;
  if (has_rowwise(params.direction)) d.push_back(Direction::kRowwise);
  if (has_columnwise(params.direction)) d.push_back(Direction::kColumnwise);
  return d;
}

std::vector<uint8_t> to_host(const TensorView& v) {
  std::vector<uint8_t> h(v.nbytes());
  if (!h.empty()) FP4KIT_BENCH_CUDA(cudaMemcpy(h.data(), v.data, h.size(), cudaMemcpyDeviceToHost));
  return h;
}

// Enough digits to tell two floats apart.
std::string exact(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
  return buf;
}

std::string hex_byte(uint8_t b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", b);
  return buf;
}

// "" when equal, else what differs: the count and the first differing byte.
std::string compare_bytes(const std::vector<uint8_t>& gpu, const std::vector<uint8_t>& cpu, const std::string& what) {
  if (gpu.size() != cpu.size()) {
    return what + " has " + std::to_string(gpu.size()) + " bytes on the GPU but " + std::to_string(cpu.size()) +
           " from the CPU reference";
  }
  std::size_t first = gpu.size(), count = 0;
  for (std::size_t i = 0; i < gpu.size(); ++i) {
    if (gpu[i] != cpu[i]) {
      if (count++ == 0) first = i;
    }
  }
  if (count == 0) return "";
  return what + " differs from the CPU reference in " + std::to_string(count) + " of " + std::to_string(gpu.size()) +
         " bytes (first at byte " + std::to_string(first) + ": gpu " + hex_byte(gpu[first]) + ", cpu " +
         hex_byte(cpu[first]) + ")";
}

std::vector<uint8_t> host_bytes(const TensorView& v) {
  const auto* p = static_cast<const uint8_t*>(v.data);
  return std::vector<uint8_t>(p, p + v.nbytes());
}

// The last run's output against fp4kit::quantize on the CPU target, byte for byte: "" when equal.
std::string check_bytes(const Nvfp4Tensor& gpu, const TensorView& x_host, const QuantParams& params) {
  const Nvfp4Tensor cpu = quantize(x_host, params, Target::cpu());
  for (const Direction d : present_directions(params)) {
    const Nvfp4Part& g = gpu.part(d);
    const Nvfp4Part& c = cpu.part(d);
    const std::string dir = direction_name(d);
    const struct {
      const TensorView& gpu;
      const TensorView& cpu;
      std::string what;
    } pieces[] = {{g.data, c.data, dir + " data"}, {g.scales, c.scales, dir + " scales"}, {g.amax, c.amax, dir + " amax"}};
    for (const auto& piece : pieces) {
      if (std::string diff = compare_bytes(to_host(piece.gpu), host_bytes(piece.cpu), piece.what); !diff.empty()) {
        return diff;
      }
    }
  }
  return compare_bytes(to_host(gpu.nonfinite_counts()), host_bytes(cpu.nonfinite_counts()), "nonfinite_counts");
}

// The columnwise amax of an RHT tensor: that of x^T transformed along R and rounded to x's dtype
// (NUMERICS §5). fp4kit::hadamard with transpose builds the very source the CPU reference quantizes,
// in about 60% of a whole reference quantization's time (2.6 s against 4.5 s at 8192x8192).
float rht_columnwise_amax(const TensorView& x_host, uint16_t mask) {
  const Nvfp4Geometry g = Nvfp4Tensor::columnwise_geometry(x_host.shape[0], x_host.shape[1]);
  std::vector<uint8_t> y(static_cast<std::size_t>(g.rows * g.padded_cols()) * dtype_size(x_host.dtype));
  const TensorView y_view = TensorView::matrix(y.data(), x_host.dtype, g.rows, g.padded_cols());
  hadamard(x_host, y_view, mask, true, Target::cpu());
  float finite_amax = 0;
  AmaxOutputs out;
  out.finite_amax = TensorView::vector(&finite_amax, DType::kF32, 1);
  amax(y_view, false, out, Target::cpu());
  return finite_amax;
}

// The last run's amax (each present direction) against the finite amax, computed on the CPU, of
// what that direction quantizes (x, or its transform for the columnwise output of an RHT tensor),
// and its non-finite counts against zero (the inputs are finite): "" when they agree.
std::string check_amax(const Nvfp4Tensor& gpu, const TensorView& x_host, const QuantParams& params) {
  float finite_amax = 0;
  uint32_t counts[2] = {1, 1};
  AmaxOutputs out;
  out.finite_amax = TensorView::vector(&finite_amax, DType::kF32, 1);
  out.nonfinite_counts = TensorView::vector(counts, DType::kU32, 2);
  amax(x_host, false, out, Target::cpu());
  for (const Direction d : present_directions(params)) {
    const float expected =
        d == Direction::kColumnwise && params.rht ? rht_columnwise_amax(x_host, params.rht_mask) : finite_amax;
    const std::vector<uint8_t> g = to_host(gpu.part(d).amax);
    float v = 0;
    std::memcpy(&v, g.data(), sizeof v);
    if (g.size() != sizeof(float) || std::memcmp(&v, &expected, sizeof v) != 0) {
      return std::string(direction_name(d)) + " amax is " + exact(v) + " on the GPU but " + exact(expected) +
             " from the CPU reference";
    }
  }
  const std::vector<uint8_t> c = to_host(gpu.nonfinite_counts());
  uint32_t g[2] = {0, 0};
  std::memcpy(g, c.data(), std::min(c.size(), sizeof g));
  if (g[0] != 0 || g[1] != 0 || counts[0] != 0 || counts[1] != 0) {
    return "nonfinite_counts are {" + std::to_string(g[0]) + ", " + std::to_string(g[1]) +
           "} on the GPU for a finite input (CPU reference {" + std::to_string(counts[0]) + ", " +
           std::to_string(counts[1]) + "})";
  }
  return "";
}

// Fills every byte a quantization writes with 0xFF (NaN scales and amax, -6 codes, huge counts),
// so that an output the kernel never writes cannot match the reference by chance, as zeros could.
void poison(const Nvfp4Tensor& t) {
  for (const Nvfp4Part* part : {&t.rowwise(), &t.columnwise()}) {
    if (!part->present) continue;
    for (const TensorView* v : {&part->data, &part->scales, &part->amax}) {
      FP4KIT_BENCH_CUDA(cudaMemset(v->data, 0xFF, v->nbytes()));
    }
  }
  FP4KIT_BENCH_CUDA(cudaMemset(t.nonfinite_counts().data, 0xFF, t.nonfinite_counts().nbytes()));
  FP4KIT_BENCH_CUDA(cudaDeviceSynchronize());  // done before the (blocking) bench stream starts
}

// --- The benchmark ----------------------------------------------------------------------------------

struct Result {
  Shape shape;
  const Mode* mode = nullptr;
  Timing timing;
  int64_t bytes = 0;
  double gbps = 0;
  double ratio = 0;
  std::string kernel;    // "variant [config]"
  std::string verified;  // "bytes" | "amax"
  std::string mismatch;  // "" when the check passed
  int input_buffers = 0;
  bool meets_target() const { return mode->target && ratio >= *mode->target; }
};

std::string selection_text(const Selection& s) { return s.variant->name + " [" + s.config.name + "]"; }

// The device block of every bench's --json report.
Json device_json(const DeviceInfo& device) {
  return {{"name", device.name},
          {"label", device.label()},
          {"compute_capability", device.compute_capability()},
          {"sm_count", device.sm_count},
          {"l2_bytes", device.l2_bytes},
          {"global_memory_bytes", device.global_memory_bytes},
          {"runtime_version", device.runtime_version},
          {"driver_version", device.driver_version},
          {"cublaslt_version", device.cublaslt_version}};
}

// Left-aligned text columns and right-aligned numbers, two spaces apart.
std::string render_table(const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right) {
  std::vector<std::size_t> width(right.size(), 0);
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::ostringstream os;
  for (const auto& row : rows) {
    std::string line = "  ";
    for (std::size_t c = 0; c < row.size(); ++c) {
      const std::string pad(width[c] - row[c].size(), ' ');
      line += right[c] ? pad + row[c] : row[c] + (c + 1 < row.size() ? pad : "");
      if (c + 1 < row.size()) line += "  ";
    }
    os << line << "\n";
  }
  return os.str();
}

void run_bench(const Benchmark& bench, const BenchArgs& args) {
  std::vector<Shape> shapes;
  if (const std::string reason = parse_shapes(args.shapes, shapes); !reason.empty()) {
    // CLI11 checked the value already; this guards a future caller.
    throw Error(ErrorCode::kInvalidArgument, "--shapes: " + reason);
  }
  if (cuda_device_count() == 0) {
    throw_no_gpu(bench.command, "no CUDA GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)");
  }
  const Device gpu{DeviceType::kCuda, 0};
  FP4KIT_BENCH_CUDA(cudaSetDevice(gpu.index));
  const DeviceInfo& device = default_context().device(gpu);
  const std::string info_hint = "`fp4kit info` shows the kernels of this build and why each is rejected";

  // The context of each mode: default_context(), as a user's call gets, unless the mode caps the
  // budget or forces a kernel. NOTE: those are built from DispatchSettings{}, not from_env(), so
  // that FP4KIT_SMEM_BUDGET or FP4KIT_FORCE_KERNEL cannot change what the mode's name says.
  std::vector<std::unique_ptr<Context>> owned_contexts;
  std::vector<Context*> contexts;
  for (const Mode& m : bench.modes) {
    if (!m.smem_budget && m.force_kernel.empty()) {
      contexts.push_back(&default_context());
      continue;
    }
    DispatchSettings settings;
    settings.smem_budget = m.smem_budget;
    settings.force_kernel = m.force_kernel;
    owned_contexts.push_back(std::make_unique<Context>(settings, Registry::builtin()));
    contexts.push_back(owned_contexts.back().get());
  }

  // Every (shape, mode) needs a CUDA kernel: find out before spending minutes on the rest.
  std::vector<std::string> kernels;  // [shape][mode]
  for (const Shape& s : shapes) {
    for (std::size_t mi = 0; mi < bench.modes.size(); ++mi) {
      const Mode& m = bench.modes[mi];
      Context& ctx = *contexts[mi];
      const DeviceInfo& ctx_device = ctx.device(gpu);
      const Problem problem = quantize_problem(s, m.params);
      Selection sel;
      try {
        sel = ctx.select(problem, ctx_device);
      } catch (const Error& e) {
        // A forced variant that is unknown or cannot run the problem. The message names
        // FP4KIT_FORCE_KERNEL, which this mode's context does not read: say which mode forced it.
        if (m.force_kernel.empty()) throw;
        throw Error(e.code(), bench.command + ": mode '" + m.name + "' forces " + m.force_kernel + ": " + e.message(),
                    info_hint);
      }
      if (!sel.ok()) {
        std::string reasons;
        for (const Rejection& r : sel.rejected) reasons += "; " + r.variant + ": " + r.reason;
        throw Error(ErrorCode::kUnsupported,
                    bench.command + ": " + problem.describe() + " has no CUDA kernel on " + device.label() + reasons,
                    info_hint);
      }
      kernels.push_back(selection_text(sel));
    }
  }

  Stream stream;
  const int64_t l2 = std::max<int64_t>(device.l2_bytes, 0);

  // The ceiling: device-to-device copy bandwidth, read + write.
  const int64_t copy_bytes = std::max<int64_t>(int64_t{1} << 30, 4 * l2);
  double copy_gbps = 0;
  Timing copy_timing;
  {
    Buffer src(static_cast<std::size_t>(copy_bytes), gpu), dst(static_cast<std::size_t>(copy_bytes), gpu);
    // Not zeros: a copy of zeros could take a shortcut a quantization of real data cannot.
    FP4KIT_BENCH_CUDA(cudaMemsetAsync(src.data(), 0xA5, static_cast<std::size_t>(copy_bytes), stream.get()));
    copy_timing = time_runs(stream.get(), kWarmupRuns, args.iters, [&](int) {
      FP4KIT_BENCH_CUDA(cudaMemcpyAsync(dst.data(), src.data(), static_cast<std::size_t>(copy_bytes),
                                        cudaMemcpyDeviceToDevice, stream.get()));
    });
    copy_gbps = 2.0 * static_cast<double>(copy_bytes) / (copy_timing.median_us * 1e3);
  }
  std::fprintf(stderr, "%s: %s: copy bandwidth %.1f GB/s (%s device to device, median of %d runs)\n",
               bench.command.c_str(), device.label().c_str(), copy_gbps, iec(copy_bytes).c_str(), copy_timing.runs);

  std::vector<Result> results;
  const int total_runs = kWarmupRuns + args.iters;
  const int last_run = total_runs - 1;
  const std::size_t jobs = shapes.size() * bench.modes.size();
  std::vector<uint16_t> host;
  for (std::size_t si = 0; si < shapes.size(); ++si) {
    const Shape& s = shapes[si];
    const int64_t input_bytes = s.rows * s.cols * static_cast<int64_t>(sizeof(uint16_t));
    // Enough distinct inputs that together they exceed twice the L2: no run finds its input cached.
    const int buffers = static_cast<int>(std::max<int64_t>(2, 2 * l2 / input_bytes + 1));
    std::vector<Buffer> inputs;
    inputs.reserve(static_cast<std::size_t>(buffers));
    for (int b = 0; b < buffers; ++b) {
      fill_input(host, s, b);
      inputs.emplace_back(static_cast<std::size_t>(input_bytes), gpu);
      FP4KIT_BENCH_CUDA(cudaMemcpy(inputs.back().data(), host.data(), static_cast<std::size_t>(input_bytes),
                                   cudaMemcpyHostToDevice));
    }
    const int last_buffer = last_run % buffers;
    fill_input(host, s, last_buffer);  // the host copy of the last run's input, for the check
    const TensorView x_host = TensorView::matrix(host.data(), DType::kBF16, s.rows, s.cols);
    const bool check_all_bytes = si == 0 && s.rows * s.cols <= kMaxBytesCheckElems;

    for (std::size_t mi = 0; mi < bench.modes.size(); ++mi) {
      const Mode& mode = bench.modes[mi];
      const QuantParams& params = mode.params;
      Nvfp4Tensor out = Nvfp4Tensor::allocate(s.rows, s.cols, DType::kBF16, params, gpu);
      poison(out);
      const Target target = Target::cuda(gpu.index, stream.get(), contexts[mi]);
      Result r;
      r.shape = s;
      r.mode = &mode;
      r.input_buffers = buffers;
      r.kernel = kernels[si * bench.modes.size() + mi];
      r.timing = time_runs(stream.get(), kWarmupRuns, args.iters, [&](int run) {
        QuantParams p = params;
        if (p.rounding == Rounding::kStochastic) p.sr_offset = static_cast<uint64_t>(run);  // every run differs
        const Buffer& in = inputs[static_cast<std::size_t>(run % buffers)];
        quantize_into(TensorView::matrix(in.data(), DType::kBF16, s.rows, s.cols, gpu), p, out, target);
      });
      r.bytes = 2 * input_bytes + static_cast<int64_t>(out.nbytes());
      r.gbps = static_cast<double>(r.bytes) / (r.timing.median_us * 1e3);
      r.ratio = r.gbps / copy_gbps;

      QuantParams last = params;
      if (last.rounding == Rounding::kStochastic) last.sr_offset = static_cast<uint64_t>(last_run);
      r.verified = check_all_bytes ? "bytes" : "amax";
      r.mismatch = check_all_bytes ? check_bytes(out, x_host, last) : check_amax(out, x_host, last);
      results.push_back(r);

      const std::string verdict =
          mode.target ? "target " + fixed(*mode.target, 2) + (r.meets_target() ? " PASS" : " FAIL") : "no target";
      std::fprintf(stderr, "%s: [%zu/%zu] %s %s: median %.1f us, %.1f GB/s, %.3f of copy (%s), %s %s%s\n",
                   bench.command.c_str(), results.size(), jobs, shape_text(s).c_str(), mode.name.c_str(),
                   r.timing.median_us, r.gbps, r.ratio, verdict.c_str(), r.verified.c_str(),
                   r.mismatch.empty() ? "match" : "MISMATCH", r.timing.host_bound_runs > 0 ? " (host-bound runs)" : "");
    }
  }

  std::vector<std::string> mismatches;
  int judged = 0, missed = 0;
  for (const Result& r : results) {
    if (!r.mismatch.empty()) mismatches.push_back(shape_text(r.shape) + " " + r.mode->name + ": " + r.mismatch);
    if (!r.mode->target) continue;
    ++judged;
    missed += r.meets_target() ? 0 : 1;
  }
  const std::string host_note =
      "runs marked host-bound blocked the host while the stream was held, so their times include host work";

  if (args.json) {
    // NOTE: a mismatch prints nothing on stdout, so that a script never parses a report of a failed
    // run; the error goes to stderr (the progress lines there keep the timings).
    if (mismatches.empty()) {
      Json j;
      j["fp4kit_version"] = version();
      j["device"] = device_json(device);
      j["copy_gbps"] = copy_gbps;
      j["copy"] = {{"bytes", copy_bytes}, {"median_us", copy_timing.median_us}, {"min_us", copy_timing.min_us}};
      j["warmup_runs"] = kWarmupRuns;
      j["timed_runs"] = args.iters;
      Json rs = Json::array();
      for (const Result& r : results) {
        rs.push_back({{"shape", {r.shape.rows, r.shape.cols}},
                      {"dtype", "bf16"},
                      {"mode", r.mode->name},
                      {"median_us", r.timing.median_us},
                      {"min_us", r.timing.min_us},
                      {"bytes", r.bytes},
                      {"gbps", r.gbps},
                      {"ratio", r.ratio},
                      {"target", r.mode->target ? Json(*r.mode->target) : Json(nullptr)},
                      {"meets_target", r.mode->target ? Json(r.meets_target()) : Json(nullptr)},
                      {"verified", r.verified},
                      {"kernel", r.kernel},
                      {"input_buffers", r.input_buffers},
                      {"host_bound_runs", r.timing.host_bound_runs}});
      }
      j["results"] = rs;
      // Which kernel ran per mode: one "variant [config]" when every shape chose the same, else
      // "RxC: variant [config]" per shape, "; "-separated.
      Json selected = Json::object();
      for (std::size_t mi = 0; mi < bench.modes.size(); ++mi) {
        std::vector<std::string> chosen;
        for (std::size_t si = 0; si < shapes.size(); ++si) chosen.push_back(kernels[si * bench.modes.size() + mi]);
        std::string text = chosen.front();
        if (std::any_of(chosen.begin(), chosen.end(), [&](const std::string& k) { return k != chosen.front(); })) {
          text.clear();
          for (std::size_t si = 0; si < shapes.size(); ++si) {
            text += (si ? "; " : "") + shape_text(shapes[si]) + ": " + chosen[si];
          }
        }
        selected[bench.modes[mi].name] = text;
      }
      j["selected"] = selected;
      j["targets_missed"] = missed;
      std::cout << j.dump(2) << "\n";
    }
  } else {
    std::cout << "fp4kit " << bench.command << " on " << device.label() << ", " << device.sm_count << " SMs, L2 "
              << iec(device.l2_bytes) << "\n"
              << "copy bandwidth " << fixed(copy_gbps, 1) << " GB/s (cudaMemcpyAsync device to device of "
              << iec(copy_bytes) << ", read + write counted, median of " << copy_timing.runs << " runs)\n"
              << "quantize_into, bf16 input: " << kWarmupRuns << " warm-up runs, median and min of " << args.iters
              << " timed runs; bytes = input read twice + outputs written once\n\n";
    std::vector<std::vector<std::string>> rows = {
        {"shape", "mode", "median us", "min us", "GB/s", "/ copy", "target", "result", "check", "kernel"}};
    bool any_host_bound = false;
    for (const Result& r : results) {
      const std::optional<double>& target = r.mode->target;
      any_host_bound = any_host_bound || r.timing.host_bound_runs > 0;
      rows.push_back({shape_text(r.shape), r.mode->name, fixed(r.timing.median_us, 1), fixed(r.timing.min_us, 1),
                      fixed(r.gbps, 1), fixed(r.ratio, 3), target ? fixed(*target, 2) : "-",
                      !target ? "report" : r.meets_target() ? "PASS" : "FAIL",
                      r.mismatch.empty() ? r.verified : r.verified + " MISMATCH",
                      r.kernel + (r.timing.host_bound_runs > 0 ? " (host-bound)" : "")});
    }
    std::cout << render_table(rows, {false, false, true, true, true, true, true, false, false, false});
    if (missed == 0) {
      std::cout << "\nevery target met\n";
    } else {
      std::cout << "\n" << missed << " of " << judged
                << " targets missed (a measurement, not an error: the exit status stays 0)\n";
    }
    if (any_host_bound) std::cout << "note: " << host_note << "\n";
    std::cout.flush();
  }

  if (!mismatches.empty()) {
    std::string message = bench.command + ": the GPU result differs from the CPU reference in " +
                          std::to_string(mismatches.size()) + " of " + std::to_string(results.size()) + " measurements: ";
    for (std::size_t i = 0; i < mismatches.size(); ++i) message += (i ? "; " : "") + mismatches[i];
    throw Error(ErrorCode::kInternal, message,
                "the CUDA kernel and src/ref disagree on these bytes: a bug; the GPU tests (tests/cuda) narrow it down");
  }
}

// --- bench gemm ---------------------------------------------------------------------------------------
//
// Per shape: cuBLASLt BF16 x BF16 -> BF16 and E4M3 x E4M3 -> BF16 (FP32 compute, TN: both operands
// K-major, as fp4kit's), then every CUDA GEMM variant of the registry forced through its own
// context, W4A4 (A and B NVFP4) and W4A16 (A bf16, B NVFP4), then what plain selection picks. The
// inputs are random bf16 (never zeros): A quantized 1D, B 2D (the fprop weight of the recipe), both
// with swizzled scales (what the native Blackwell path reads), by fp4kit::quantize on the GPU.
// Each run is timed alone: a write of twice the L2 before it, outside its event pair.

std::string gemm_shape_text(const GemmShape& s) {
  return std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k);
}

bool is_decode(const GemmShape& s) { return s.m <= kDecodeMaxM; }

constexpr int kGemmProbeRuns = 3;                // timed once to size the measurement (after one warm-up)
constexpr int64_t kPoolElems = 16777213;         // odd: rows of any K start at different pool offsets
constexpr uint64_t kPoolSeed = 0x6E6D6D5EEDull;

// Random inputs without a kernel: pools of values made once on the host, copied device to device
// into each operand from a different offset. bf16: random sign, exponent 2^-4 .. 2^1 and mantissa
// (finite, normal, never zero); its magnitudes, element for element (the check's |A|, |B|); E4M3
// codes 2^-3 .. 2^2 with random sign and mantissa (never NaN).
struct DevicePools {
  Buffer bf16, bf16_abs, e4m3;
};

DevicePools make_pools(Device gpu) {
  std::vector<uint16_t> v(static_cast<std::size_t>(kPoolElems)), a(v.size());
  std::vector<uint8_t> e(v.size());
  for (int64_t i = 0; i < kPoolElems; ++i) {
    const uint64_t h = splitmix64(kPoolSeed + static_cast<uint64_t>(i) * 0xD1B54A32D192ED03ull);
    const uint32_t exp = static_cast<uint32_t>(127 - 4 + (h >> 8) % 6);
    const uint16_t mag = static_cast<uint16_t>((exp << 7) | ((h >> 1) & 0x7Fu));
    a[static_cast<std::size_t>(i)] = mag;
    v[static_cast<std::size_t>(i)] = static_cast<uint16_t>(mag | ((h & 1u) << 15));
    e[static_cast<std::size_t>(i)] =
        static_cast<uint8_t>(((h >> 16) & 1u) << 7 | (4 + (h >> 20) % 6) << 3 | ((h >> 28) & 7u));
  }
  DevicePools p{Buffer(v.size() * 2, gpu), Buffer(a.size() * 2, gpu), Buffer(e.size(), gpu)};
  FP4KIT_BENCH_CUDA(cudaMemcpy(p.bf16.data(), v.data(), v.size() * 2, cudaMemcpyHostToDevice));
  FP4KIT_BENCH_CUDA(cudaMemcpy(p.bf16_abs.data(), a.data(), a.size() * 2, cudaMemcpyHostToDevice));
  FP4KIT_BENCH_CUDA(cudaMemcpy(p.e4m3.data(), e.data(), e.size(), cudaMemcpyHostToDevice));
  return p;
}

// dst[0 .. n) = pool[(offset + i) % kPoolElems], elements of `elem` bytes.
void fill_from_pool(void* dst, int64_t n, std::size_t elem, const Buffer& pool, int64_t offset, cudaStream_t s) {
  int64_t done = 0, pos = offset % kPoolElems;
  while (done < n) {
    const int64_t chunk = std::min(n - done, kPoolElems - pos);
    FP4KIT_BENCH_CUDA(cudaMemcpyAsync(static_cast<uint8_t*>(dst) + done * static_cast<int64_t>(elem),
                                      static_cast<const uint8_t*>(pool.data()) + pos * static_cast<int64_t>(elem),
                                      static_cast<std::size_t>(chunk) * elem, cudaMemcpyDeviceToDevice, s));
    done += chunk;
    pos = 0;
  }
}

void check_lt(cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw Error(status == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::kOutOfMemory : ErrorCode::kCudaError,
                std::string("bench gemm: ") + call + " failed: " + cublasLtGetStatusString(status));
  }
}

class LtHandle {
 public:
  LtHandle() { check_lt(cublasLtCreate(&handle_), "cublasLtCreate"); }
  ~LtHandle() { cublasLtDestroy(handle_); }
  LtHandle(const LtHandle&) = delete;
  LtHandle& operator=(const LtHandle&) = delete;
  cublasLtHandle_t get() const noexcept { return handle_; }

 private:
  cublasLtHandle_t handle_ = nullptr;
};

constexpr int64_t kLtWorkspaceBytes = int64_t{32} << 20;  // cuBLASLt's recommendation for Hopper/Blackwell

// A ceiling: cuBLASLt's D[M, N] (bf16, row-major) = A[M, K] . B[N, K]^T, both K-major ("TN" in its
// column-major terms, as fp4kit's operands), FP32 compute, the heuristic's first algorithm chosen
// once. unavailable() says why not where cuBLASLt has none (FP8 before sm_89, for one).
class LtBaseline {
 public:
  LtBaseline(cublasLtHandle_t handle, cudaDataType_t in_type, const GemmShape& s, const void* a, const void* b, void* d,
             void* workspace)
      : handle_(handle), a_(a), b_(b), d_(d), workspace_(workspace) {
    check_lt(cublasLtMatmulDescCreate(&op_, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    const cublasOperation_t t = CUBLAS_OP_T, n = CUBLAS_OP_N;
    check_lt(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t), "TRANSA");
    check_lt(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSB, &n, sizeof n), "TRANSB");
    const auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
    check_lt(cublasLtMatrixLayoutCreate(&layout_[0], in_type, u(s.k), u(s.n), s.k), "cublasLtMatrixLayoutCreate(B)");
    check_lt(cublasLtMatrixLayoutCreate(&layout_[1], in_type, u(s.k), u(s.m), s.k), "cublasLtMatrixLayoutCreate(A)");
    check_lt(cublasLtMatrixLayoutCreate(&layout_[2], CUDA_R_16BF, u(s.n), u(s.m), s.n), "cublasLtMatrixLayoutCreate(D)");
    check_lt(cublasLtMatmulPreferenceCreate(&preference_), "cublasLtMatmulPreferenceCreate");
    const uint64_t bytes = static_cast<uint64_t>(kLtWorkspaceBytes);
    check_lt(
        cublasLtMatmulPreferenceSetAttribute(preference_, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &bytes, sizeof bytes),
        "MAX_WORKSPACE_BYTES");
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle_, op_, layout_[0], layout_[1], layout_[2], layout_[2],
                                                             preference_, 1, &best_, &found);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
      unavailable_ = "cuBLASLt " + std::to_string(cublasLtGetVersion()) + " has no algorithm for it on this device (" +
                     (st != CUBLAS_STATUS_SUCCESS ? std::string(cublasLtGetStatusString(st)) : "no heuristic result") + ")";
    }
  }
  ~LtBaseline() {
    if (preference_) cublasLtMatmulPreferenceDestroy(preference_);
    for (cublasLtMatrixLayout_t l : layout_) {
      if (l) cublasLtMatrixLayoutDestroy(l);
    }
    if (op_) cublasLtMatmulDescDestroy(op_);
  }
  LtBaseline(const LtBaseline&) = delete;
  LtBaseline& operator=(const LtBaseline&) = delete;

  const std::string& unavailable() const noexcept { return unavailable_; }
  void run(cudaStream_t stream) const {
    const float one = 1.0f, zero = 0.0f;
    check_lt(cublasLtMatmul(handle_, op_, &one, b_, layout_[0], a_, layout_[1], &zero, d_, layout_[2], d_, layout_[2],
                            &best_.algo, workspace_, static_cast<std::size_t>(kLtWorkspaceBytes), stream),
             "cublasLtMatmul");
  }

 private:
  cublasLtHandle_t handle_;
  const void* a_;
  const void* b_;
  void* d_;
  void* workspace_;
  cublasLtMatmulDesc_t op_ = nullptr;
  cublasLtMatrixLayout_t layout_[3] = {nullptr, nullptr, nullptr};
  cublasLtMatmulPreference_t preference_ = nullptr;
  cublasLtMatmulHeuristicResult_t best_{};
  std::string unavailable_;
};

enum class GemmMode : uint8_t { kW4A4, kW4A16 };
const char* gemm_mode_name(GemmMode m) { return m == GemmMode::kW4A4 ? "w4a4" : "w4a16"; }

// One line of a shape: a ceiling, a forced variant in one mode, or plain selection.
struct GemmLine {
  std::string path;      // "cuBLAS bf16", "cuBLASLt fp8", "B's NVFP4 bytes", a variant name, "selected"
  std::string mode;      // "bf16", "fp8", "read" (ceilings), "w4a4", "w4a16"
  bool ran = false;
  std::string reason;    // why it did not run
  std::string kernel;    // "variant [config]", or cuBLASLt's
  Timing timing;
  double tflops = 0;
  double vs_bf16 = 0;    // cuBLAS BF16's median time / this one's: throughput ratio (speedup for decode)
  std::string check;     // "match", "reference", "unchecked: ...", "-" (ceilings), or the mismatch
  bool mismatch = false;
  double worst_error_ratio = 0;  // largest |D - D_ref| / tolerance over the output (<= 1 when it matches)
  bool reused = false;   // plain selection: the forced line of the same variant and configuration

  // A ceiling (cuBLAS BF16, cuBLASLt FP8, the weight read), not an fp4kit GEMM.
  bool is_ceiling() const { return mode == "bf16" || mode == "fp8" || mode == "read"; }
};

GemmLine line(std::string path, std::string mode) {
  GemmLine l;
  l.path = std::move(path);
  l.mode = std::move(mode);
  return l;
}

struct GemmTargetVerdict {
  std::string goal;    // "sm90_gemm_nvfp4 w4a4 >= 0.90x cuBLAS bf16", ...
  double threshold = 0;
  double value = 0;    // the ratio or speedup measured (0 when nothing ran)
  bool met = false;
  std::string by;      // the line that decided it
  std::string note;    // why nothing was measured
};

struct GemmShapeResult {
  GemmShape shape;
  std::vector<GemmLine> lines;
  GemmTargetVerdict target;
  double flop() const {
    return 2.0 * static_cast<double>(shape.m) * static_cast<double>(shape.n) * static_cast<double>(shape.k);
  }
};

// The Problem fp4kit::gemm builds for this call (src/dispatch/ops.cpp): what selection sees.
Problem gemm_problem(const GemmShape& s, GemmMode mode) {
  Problem p;
  p.op = OpKind::kGemm;
  p.rows = s.m;
  p.cols = s.n;
  p.k = s.k;
  p.in_dtype = mode == GemmMode::kW4A4 ? DType::kU8 : DType::kBF16;
  p.out_dtype = DType::kBF16;
  p.a_nvfp4 = mode == GemmMode::kW4A4;
  p.b_2d = true;
  return p;
}

// An Error a GEMM may raise at launch for a problem it cannot serve after all (cuBLASLt without an
// algorithm, a shape rule): reported as the line's reason. Anything else (a CUDA fault) ends the bench.
bool is_refusal(const Error& e) {
  return e.code() == ErrorCode::kUnsupported || e.code() == ErrorCode::kShapeMismatch ||
         e.code() == ErrorCode::kInvalidArgument;
}

std::vector<uint16_t> download_bf16(const Buffer& b, int64_t n) {
  std::vector<uint16_t> h(static_cast<std::size_t>(n));
  FP4KIT_BENCH_CUDA(cudaMemcpy(h.data(), b.data(), h.size() * 2, cudaMemcpyDeviceToHost));
  return h;
}

// The NUMERICS §7 bound between two backends' BF16 outputs of one GEMM, element by element: each
// is within 2^-20 * K * sum|A'B'| * |alpha| of the float64 result plus its own BF16 rounding
// (half an ulp: 2^-8 of the value), so they are within the sum of both. abs_sums holds
// alpha * sum_k |A'B'| as the reference backend computes it (FP32 sums of non-negative terms: low
// by at most a factor 1 - K * 2^-24, covered by the K * 2^-23 margin). "" when every element is
// within the bound; ratio: the largest |difference| / bound.
std::string compare_gemm(const std::vector<uint16_t>& got, const std::vector<uint16_t>& ref,
                         const std::vector<float>& abs_sums, const GemmShape& s, double& ratio) {
  const double k = static_cast<double>(s.k);
  const double gemm_factor = 2.0 * std::ldexp(k, -20) * (1.0 + std::ldexp(k, -23));
  const double round_factor = std::ldexp(1.0, -8) * (1.0 + std::ldexp(1.0, -7));
  int64_t bad = 0, worst = -1;
  ratio = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = bf16_to_float(got[i]), r = bf16_to_float(ref[i]);
    const double tol = gemm_factor * abs_sums[i] + round_factor * (std::fabs(g) + std::fabs(r)) + 1e-30;
    const double err = std::fabs(g - r);
    // A NaN anywhere fails (the inputs are finite) and counts as the worst.
    const double q = std::isnan(err) || std::isnan(tol) ? HUGE_VAL : err / tol;
    if (q > 1.0) {
      ++bad;
      if (worst < 0 || q > ratio) worst = static_cast<int64_t>(i);
    }
    ratio = std::max(ratio, q);
  }
  if (bad == 0) return "";
  const int64_t row = worst / s.n, col = worst % s.n;
  const std::size_t w = static_cast<std::size_t>(worst);
  return std::to_string(bad) + " of " + std::to_string(got.size()) + " outputs outside the NUMERICS 7 bound of " +
         kReferenceGemmVariant + "'s; worst [" + std::to_string(row) + ", " + std::to_string(col) + "]: " +
         exact(bf16_to_float(got[w])) + " against " + exact(bf16_to_float(ref[w])) + " (sum |A'B'| * alpha " +
         exact(abs_sums[w]) + ")";
}

// Times run() alone per iteration: the L2 flush before it, outside its events. A probe (one warm-up,
// then kGemmProbeRuns timed) sizes the measurement to the time budget.
template <typename Run>
Timing time_gemm(cudaStream_t stream, const Buffer& flush, int max_runs, const Run& run) {
  const auto flush_l2 = [&](int i) {
    FP4KIT_BENCH_CUDA(cudaMemsetAsync(flush.data(), i & 0xFF, flush.size(), stream));
  };
  const auto timed = [&](int) { run(); };
  const Timing probe = time_runs(stream, 1, kGemmProbeRuns, timed, flush_l2);
  const double wanted = kGemmTimeBudgetUs / std::max(probe.median_us, 1e-3);
  const int floor_runs = std::min(kGemmMinRuns, max_runs);
  const int runs = static_cast<int>(std::clamp<double>(std::floor(wanted), floor_runs, max_runs));
  return time_runs(stream, 0, runs, timed, flush_l2);
}

std::string ratio_text(double v) { return fixed(v, 2) + "x"; }

void run_gemm_bench(const GemmBenchArgs& args) {
  const std::string command = "bench gemm";
  std::vector<GemmShape> shapes;
  if (const std::string reason = parse_gemm_shapes(args.shapes, shapes); !reason.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "--shapes: " + reason);
  }
  if (cuda_device_count() == 0) {
    throw_no_gpu(command, "no CUDA GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)");
  }
  const Device gpu{DeviceType::kCuda, 0};
  FP4KIT_BENCH_CUDA(cudaSetDevice(gpu.index));
  Context& plain = default_context();  // what a user's call gets
  const DeviceInfo& device = plain.device(gpu);

  // Every CUDA GEMM variant of this build, each forced through a context of its own (built from
  // DispatchSettings{}, not the environment, so that the line's name is what ran).
  const Registry registry = Registry::builtin();
  std::vector<const KernelVariant*> variants;
  std::vector<std::unique_ptr<Context>> forced;
  for (const KernelVariant& v : registry.variants()) {
    if (v.op != OpKind::kGemm || v.device_type != DeviceType::kCuda) continue;
    variants.push_back(&v);
    DispatchSettings settings;
    settings.force_kernel = v.name;
    forced.push_back(std::make_unique<Context>(settings, Registry::builtin()));
  }
  const auto reference_it = std::find_if(variants.begin(), variants.end(),
                                         [](const KernelVariant* v) { return v->name == kReferenceGemmVariant; });
  const std::size_t reference_index = static_cast<std::size_t>(reference_it - variants.begin());

  Stream stream;
  const cudaStream_t s = stream.get();
  const int64_t l2 = std::max<int64_t>(device.l2_bytes, 0);
  // The L2 flush: a write of at least twice the L2 (256 MiB when the device reports none).
  const Buffer flush(static_cast<std::size_t>(l2 > 0 ? 2 * l2 : int64_t{256} << 20), gpu);
  const DevicePools pools = make_pools(gpu);
  const LtHandle lt;
  const Buffer lt_workspace(static_cast<std::size_t>(kLtWorkspaceBytes), gpu);
  const Target target_plain = Target::cuda(gpu.index, s, &plain);

  std::vector<GemmShapeResult> results;
  const auto progress = [&](const GemmShape& shape, const GemmLine& l) {
    if (!l.ran) {
      std::fprintf(stderr, "%s: %s %s %s: not run: %s\n", command.c_str(), gemm_shape_text(shape).c_str(), l.mode.c_str(),
                   l.path.c_str(), l.reason.c_str());
      return;
    }
    std::fprintf(stderr, "%s: %s %s %s: median %.1f us of %d runs, %.1f TFLOP/s, %s cuBLAS bf16, %s%s\n", command.c_str(),
                 gemm_shape_text(shape).c_str(), l.mode.c_str(), l.path.c_str(), l.timing.median_us, l.timing.runs,
                 l.tflops, ratio_text(l.vs_bf16).c_str(), l.check.c_str(),
                 l.timing.host_bound_runs > 0 ? " (host-bound runs)" : "");
  };

  for (const GemmShape& sh : shapes) {
    GemmShapeResult result;
    result.shape = sh;
    const double flop = result.flop();
    const int64_t mk = sh.m * sh.k, nk = sh.n * sh.k, mn = sh.m * sh.n;
    // Operands: A from the pool's start, B from its middle; the magnitudes at the same offsets.
    Buffer a(static_cast<std::size_t>(mk) * 2, gpu), b(static_cast<std::size_t>(nk) * 2, gpu);
    Buffer a_abs(static_cast<std::size_t>(mk) * 2, gpu), b_abs(static_cast<std::size_t>(nk) * 2, gpu);
    fill_from_pool(a.data(), mk, 2, pools.bf16, 0, s);
    fill_from_pool(b.data(), nk, 2, pools.bf16, kPoolElems / 2, s);
    fill_from_pool(a_abs.data(), mk, 2, pools.bf16_abs, 0, s);
    fill_from_pool(b_abs.data(), nk, 2, pools.bf16_abs, kPoolElems / 2, s);
    const TensorView a_view = TensorView::matrix(a.data(), DType::kBF16, sh.m, sh.k, gpu);
    const TensorView a_abs_view = TensorView::matrix(a_abs.data(), DType::kBF16, sh.m, sh.k, gpu);
    QuantParams pa;  // the fprop input: rowwise 1D, RNE
    pa.swizzled_scales = true;
    QuantParams pb = pa;  // the fprop weight: 2D
    pb.block = BlockScaling::k2D;
    // quantize(|x|) is |quantize(x)| value for value: the same amax and block scales, and E2M1
    // rounding mirrored for negatives (NUMERICS §2).
    const Nvfp4Tensor qa = quantize(a_view, pa, target_plain);
    const Nvfp4Tensor qb = quantize(TensorView::matrix(b.data(), DType::kBF16, sh.n, sh.k, gpu), pb, target_plain);
    const Nvfp4Tensor qa_abs = quantize(a_abs_view, pa, target_plain);
    const Nvfp4Tensor qb_abs = quantize(TensorView::matrix(b_abs.data(), DType::kBF16, sh.n, sh.k, gpu), pb, target_plain);
    Buffer d(static_cast<std::size_t>(mn) * 2, gpu);
    const TensorView d_view = TensorView::matrix(d.data(), DType::kBF16, sh.m, sh.n, gpu);
    const auto finish = [&](GemmLine& l, double bf16_us) {
      l.tflops = flop / (l.timing.median_us * 1e6);
      l.vs_bf16 = bf16_us > 0 ? bf16_us / l.timing.median_us : 0;
    };

    // The ceilings: cuBLASLt BF16 and FP8.
    double bf16_us = 0;
    {
      GemmLine l = line("cuBLAS bf16", "bf16");
      LtBaseline base(lt.get(), CUDA_R_16BF, sh, a.data(), b.data(), d.data(), lt_workspace.data());
      if (!base.unavailable().empty()) {
        throw Error(ErrorCode::kUnsupported, command + ": the ceiling, cuBLASLt BF16 " + gemm_shape_text(sh) + ": " +
                                                 base.unavailable());
      }
      l.timing = time_gemm(s, flush, args.iters, [&] { base.run(s); });
      l.ran = true;
      l.kernel = "cublasLt bf16 (heuristic's first)";
      l.check = "-";
      bf16_us = l.timing.median_us;
      finish(l, bf16_us);
      progress(sh, l);
      result.lines.push_back(l);
    }
    {
      GemmLine l = line("cuBLASLt fp8", "fp8");
      Buffer a8(static_cast<std::size_t>(mk), gpu), b8(static_cast<std::size_t>(nk), gpu);
      fill_from_pool(a8.data(), mk, 1, pools.e4m3, 0, s);
      fill_from_pool(b8.data(), nk, 1, pools.e4m3, kPoolElems / 2, s);
      LtBaseline base(lt.get(), CUDA_R_8F_E4M3, sh, a8.data(), b8.data(), d.data(), lt_workspace.data());
      if (base.unavailable().empty()) {
        l.timing = time_gemm(s, flush, args.iters, [&] { base.run(s); });
        l.ran = true;
        l.kernel = "cublasLt e4m3 (heuristic's first)";
        l.check = "-";
        finish(l, bf16_us);
      } else {
        l.reason = base.unavailable();
      }
      progress(sh, l);
      result.lines.push_back(l);
    }

    // Decode shapes: the weight stream's ceiling, one read of B's NVFP4 codes and scales (every
    // decode GEMM must move them once) by a read-only kernel, after the same flush.
    if (is_decode(sh)) {
      GemmLine l = line("B's NVFP4 bytes", "read");
      const Nvfp4Part& w = qb.rowwise();
      const void* buffers[2] = {w.data.data, w.scales.data};
      const std::size_t sizes[2] = {w.data.nbytes(), w.scales.nbytes()};
      Buffer sink(256, gpu);
      l.timing = time_gemm(s, flush, args.iters,
                           [&] { fp4kit::cuda::read_buffers(buffers, sizes, 2, static_cast<unsigned*>(sink.data()), s); });
      l.ran = true;
      l.check = "-";
      const double bytes = static_cast<double>(sizes[0] + sizes[1]);
      l.kernel = "read-only kernel: " + iec(static_cast<int64_t>(bytes)) + " at " +
                 fixed(bytes / (l.timing.median_us * 1e6), 2) + " TB/s (the TFLOP/s a GEMM taking this time would reach)";
      finish(l, bf16_us);
      progress(sh, l);
      result.lines.push_back(l);
    }

    for (const GemmMode mode : {GemmMode::kW4A4, GemmMode::kW4A16}) {
      const Problem problem = gemm_problem(sh, mode);
      const GemmOperand op_a = mode == GemmMode::kW4A4 ? GemmOperand::quantized(qa) : GemmOperand::matrix(a_view);
      const GemmOperand op_a_abs = mode == GemmMode::kW4A4 ? GemmOperand::quantized(qa_abs) : GemmOperand::matrix(a_abs_view);
      const GemmOperand op_b = GemmOperand::quantized(qb);
      // Which variants can run it, and why the others cannot (selection's reasons, no environment).
      const Selection all = select_kernel(registry, problem, device, DispatchSettings{});
      // "" when some configuration of v is feasible (chosen, or ranked lower), else every reason.
      const auto infeasible = [&](const KernelVariant& v) -> std::string {
        if (all.ok() && all.variant == &v) return "";
        std::string why;
        for (const Rejection& r : all.rejected) {
          if (r.variant != v.name) continue;
          if (r.reason.rfind("feasible, ranked lower", 0) == 0) return "";
          why += (why.empty() ? "" : "; ") + (r.config.empty() ? "" : r.config + ": ") + r.reason;
        }
        return why.empty() ? "not a candidate" : why;
      };

      // The check's reference: D and alpha * sum|A'B'| from the portable exact path.
      std::vector<uint16_t> ref;
      std::vector<float> abs_sums;
      std::string unchecked;
      if (reference_index == variants.size()) {
        unchecked = std::string("unchecked: no ") + kReferenceGemmVariant + " in this build";
      } else if (const std::string why = infeasible(*variants[reference_index]); !why.empty()) {
        unchecked = std::string("unchecked: ") + kReferenceGemmVariant + " cannot run it: " + why;
      } else {
        Context& ctx = *forced[reference_index];
        Buffer sums(static_cast<std::size_t>(mn) * 4, gpu);
        FP4KIT_BENCH_CUDA(cudaMemsetAsync(d.data(), 0xFF, d.size(), s));  // bf16 NaN: an unwritten output fails
        gemm(op_a, op_b, d_view, {}, Target::cuda(gpu.index, s, &ctx));
        gemm(op_a_abs, GemmOperand::quantized(qb_abs), TensorView::matrix(sums.data(), DType::kF32, sh.m, sh.n, gpu), {},
             Target::cuda(gpu.index, s, &ctx));
        FP4KIT_BENCH_CUDA(cudaStreamSynchronize(s));
        ref = download_bf16(d, mn);
        abs_sums.resize(static_cast<std::size_t>(mn));
        FP4KIT_BENCH_CUDA(cudaMemcpy(abs_sums.data(), sums.data(), abs_sums.size() * 4, cudaMemcpyDeviceToHost));
      }

      // Times one context's GEMM into the poisoned output, then checks it against the reference.
      const auto measure = [&](GemmLine& l, Context& ctx, bool is_reference) {
        const Target t = Target::cuda(gpu.index, s, &ctx);
        FP4KIT_BENCH_CUDA(cudaMemsetAsync(d.data(), 0xFF, d.size(), s));  // bf16 NaN: an unwritten output fails
        try {
          gemm(op_a, op_b, d_view, {}, t);  // the first call: a refusal at launch stops here
        } catch (const Error& e) {
          if (!is_refusal(e)) throw;
          l.reason = e.message();
          return;
        }
        FP4KIT_BENCH_CUDA(cudaMemsetAsync(d.data(), 0xFF, d.size(), s));
        l.timing = time_gemm(s, flush, args.iters, [&] { gemm(op_a, op_b, d_view, {}, t); });
        l.ran = true;
        finish(l, bf16_us);
        FP4KIT_BENCH_CUDA(cudaStreamSynchronize(s));
        if (!unchecked.empty()) {
          l.check = unchecked;
        } else {
          // The reference variant's timed output too (its runs need not be bit-identical: cuBLASLt
          // may reduce split-K partial sums in any order).
          const std::string diff = compare_gemm(download_bf16(d, mn), ref, abs_sums, sh, l.worst_error_ratio);
          l.check = !diff.empty() ? "MISMATCH: " + diff : is_reference ? "reference" : "match";
          l.mismatch = !diff.empty();
        }
      };

      std::size_t first_line = result.lines.size();
      for (std::size_t vi = 0; vi < variants.size(); ++vi) {
        const KernelVariant& v = *variants[vi];
        GemmLine l = line(v.name, gemm_mode_name(mode));
        if (const std::string why = infeasible(v); !why.empty()) {
          l.reason = why;
        } else {
          l.kernel = selection_text(forced[vi]->select(problem, device));
          measure(l, *forced[vi], vi == reference_index);
        }
        progress(sh, l);
        result.lines.push_back(l);
      }

      // Plain selection: the forced line of the same variant and configuration when there is one.
      GemmLine sel = line("selected", gemm_mode_name(mode));
      Selection chosen;
      try {
        chosen = plain.select(problem, device);
      } catch (const Error& e) {  // FP4KIT_FORCE_KERNEL names a variant that cannot run it
        sel.reason = e.message();
      }
      if (!chosen.ok()) {
        if (sel.reason.empty()) sel.reason = "nothing feasible";
      } else {
        sel.kernel = selection_text(chosen);
        const auto same = std::find_if(result.lines.begin() + static_cast<std::ptrdiff_t>(first_line), result.lines.end(),
                                       [&](const GemmLine& l) { return l.ran && l.kernel == sel.kernel; });
        if (same != result.lines.end()) {
          sel = *same;
          sel.path = "selected";
          sel.reused = true;
        } else {
          const std::size_t vi = static_cast<std::size_t>(
              std::find(variants.begin(), variants.end(), chosen.variant) - variants.begin());
          measure(sel, plain, vi == reference_index);
          sel.kernel = selection_text(chosen);
        }
      }
      progress(sh, sel);
      result.lines.push_back(sel);
    }

    // The shape's target.
    GemmTargetVerdict& v = result.target;
    if (is_decode(sh)) {
      // W4A4 and W4A16 each: per mode its fastest correct GEMM, and the verdict is the slower mode's.
      v.goal = "fastest fp4kit GEMM >= " + fixed(kDecodeTarget, 1) + "x faster than cuBLAS bf16, w4a4 and w4a16 each";
      v.threshold = kDecodeTarget;
      for (const GemmMode mode : {GemmMode::kW4A4, GemmMode::kW4A16}) {
        const GemmLine* best = nullptr;
        for (const GemmLine& l : result.lines) {
          if (!l.ran || l.mismatch || l.mode != gemm_mode_name(mode) || l.path == "selected") continue;
          if (best == nullptr || l.vs_bf16 > best->vs_bf16) best = &l;
        }
        if (best == nullptr) {
          v.value = 0;
          v.by.clear();
          v.note = std::string("no ") + gemm_mode_name(mode) + " fp4kit GEMM ran with a correct result";
          break;
        }
        if (v.by.empty() || best->vs_bf16 < v.value) {  // the first mode's, or a slower one
          v.value = best->vs_bf16;
          v.by = best->mode + " " + best->kernel;
        }
      }
    } else {
      v.goal = std::string(kFusedGemmVariant) + " w4a4 >= " + fixed(kTrainingTarget, 2) + "x cuBLAS bf16 throughput";
      v.threshold = kTrainingTarget;
      const auto fused = std::find_if(result.lines.begin(), result.lines.end(), [](const GemmLine& l) {
        return l.path == kFusedGemmVariant && l.mode == "w4a4";
      });
      if (fused == result.lines.end()) {
        v.note = std::string(kFusedGemmVariant) + " is not in this build";
      } else if (!fused->ran) {
        v.note = std::string(kFusedGemmVariant) + " did not run: " + fused->reason;
      } else if (fused->mismatch) {
        v.note = std::string(kFusedGemmVariant) + " gave a wrong result";
      } else {
        v.value = fused->vs_bf16;
        v.by = "w4a4 " + fused->kernel;
      }
    }
    v.met = !v.by.empty() && v.value >= v.threshold;
    std::fprintf(stderr, "%s: %s target %s: %s%s\n", command.c_str(), gemm_shape_text(sh).c_str(), v.goal.c_str(),
                 v.by.empty() ? "missed" : (ratio_text(v.value) + (v.met ? " met" : " missed")).c_str(),
                 v.note.empty() ? "" : (" (" + v.note + ")").c_str());
    results.push_back(std::move(result));
  }

  std::vector<std::string> mismatches;
  int met = 0, missed = 0;
  bool any_host_bound = false;
  for (const GemmShapeResult& r : results) {
    (r.target.met ? met : missed) += 1;
    for (const GemmLine& l : r.lines) {
      if (l.mismatch && !l.reused) {
        mismatches.push_back(gemm_shape_text(r.shape) + " " + l.mode + " " + l.path + ": " + l.check);
      }
      any_host_bound = any_host_bound || (l.ran && l.timing.host_bound_runs > 0);
    }
  }

  if (args.json) {
    // NOTE: a mismatch prints nothing on stdout (as bench quantize): no script parses a failed run.
    if (mismatches.empty()) {
      Json j;
      j["fp4kit_version"] = version();
      j["device"] = device_json(device);
      j["method"] = {{"l2_flush_bytes", flush.size()},
                     {"warmup_runs", 1},
                     {"probe_runs", kGemmProbeRuns},
                     {"max_timed_runs", args.iters},
                     {"min_timed_runs", std::min(kGemmMinRuns, args.iters)},
                     {"time_budget_us", kGemmTimeBudgetUs},
                     {"a", "bf16 random, quantized rowwise 1d rne (w4a4) or dense (w4a16)"},
                     {"b", "bf16 random, quantized rowwise 2d rne"},
                     {"d", "bf16"},
                     {"check_reference", kReferenceGemmVariant}};
      j["targets"] = {{"training",
                       {{"variant", kFusedGemmVariant}, {"mode", "w4a4"}, {"min_ratio_to_cublas_bf16", kTrainingTarget}}},
                      {"decode", {{"max_m", kDecodeMaxM}, {"min_speedup_over_cublas_bf16", kDecodeTarget}}}};
      const auto timing_json = [](const GemmLine& l) {
        return Json{{"median_us", l.timing.median_us},
                    {"min_us", l.timing.min_us},
                    {"runs", l.timing.runs},
                    {"tflops", l.tflops},
                    {"host_bound_runs", l.timing.host_bound_runs}};
      };
      Json rs = Json::array();
      for (const GemmShapeResult& r : results) {
        Json e;
        e["shape"] = {{"m", r.shape.m}, {"n", r.shape.n}, {"k", r.shape.k}};
        e["kind"] = is_decode(r.shape) ? "decode" : "training";
        e["flop"] = r.flop();
        Json ceiling = Json::object(), fp4 = Json::array(), selected = Json::object();
        for (const GemmLine& l : r.lines) {
          Json x;
          if (l.is_ceiling()) {
            x = l.ran ? timing_json(l) : Json{{"available", false}, {"reason", l.reason}};
            if (l.ran) {
              x["available"] = true;
              x["kernel"] = l.kernel;
              x["ratio_to_cublas_bf16"] = l.vs_bf16;
            }
            ceiling[l.mode == "bf16" ? "cublas_bf16" : l.mode == "fp8" ? "cublaslt_fp8" : "nvfp4_weight_read"] = x;
            continue;
          }
          x = {{"variant", l.path == "selected" ? Json(nullptr) : Json(l.path)}, {"mode", l.mode}, {"ran", l.ran}};
          if (l.ran) {
            x.update(timing_json(l));
            x["ratio_to_cublas_bf16"] = l.vs_bf16;
            x["kernel"] = l.kernel;
            x["check"] = l.check;
            x["worst_error_over_bound"] = l.worst_error_ratio;
          } else {
            x["reason"] = l.reason;
            if (!l.kernel.empty()) x["kernel"] = l.kernel;
          }
          if (l.path == "selected") {
            x.erase("variant");
            x["kernel"] = l.kernel;
            x["same_as_forced_line"] = l.reused;
            selected[l.mode] = x;
          } else {
            fp4.push_back(x);
          }
        }
        e["ceiling"] = ceiling;
        e["fp4kit"] = fp4;
        e["selected"] = selected;
        e["target"] = {{"goal", r.target.goal},
                       {"threshold", r.target.threshold},
                       {"value", r.target.by.empty() ? Json(nullptr) : Json(r.target.value)},
                       {"met", r.target.met},
                       {"by", r.target.by},
                       {"note", r.target.note}};
        rs.push_back(e);
      }
      j["results"] = rs;
      j["targets_met"] = met;
      j["targets_missed"] = missed;
      std::cout << j.dump(2) << "\n";
    }
  } else {
    std::cout << "fp4kit " << command << " on " << device.label() << ", " << device.sm_count << " SMs, L2 "
              << iec(device.l2_bytes) << "\n"
              << "D[M, N] bf16 = A[M, K] . B[N, K]^T, both K-major; A bf16 random (w4a4: quantized 1d), B quantized 2d; "
              << "each run timed alone after an L2 flush (" << iec(static_cast<int64_t>(flush.size()))
              << " written), median of up to " << args.iters << " runs (fewer past " << fixed(kGemmTimeBudgetUs / 1e3, 0)
              << " ms); x bf16 = cuBLAS bf16 time / this time; check: within the NUMERICS 7 bound of "
              << kReferenceGemmVariant << "'s output\n";
    for (const GemmShapeResult& r : results) {
      std::cout << "\n" << gemm_shape_text(r.shape) << " (" << (is_decode(r.shape) ? "decode" : "training") << ")\n";
      std::vector<std::vector<std::string>> rows = {{"mode", "path", "median us", "TFLOP/s", "x bf16", "check", "kernel"}};
      for (const GemmLine& l : r.lines) {
        if (!l.ran) {
          rows.push_back({l.mode, l.path, "-", "-", "-", "-", "not run: " + l.reason});
          continue;
        }
        rows.push_back({l.mode, l.path, fixed(l.timing.median_us, 1), fixed(l.tflops, 1), ratio_text(l.vs_bf16), l.check,
                        l.kernel + (l.reused ? " (timed above)" : "") +
                            (l.timing.host_bound_runs > 0 ? " (host-bound)" : "")});
      }
      std::cout << render_table(rows, {false, false, true, true, true, false, false});
      std::cout << "  target: " << r.target.goal << ": "
                << (r.target.by.empty() ? "missed" : ratio_text(r.target.value) + " by " + r.target.by + ", " +
                                                          (r.target.met ? "met" : "missed"))
                << (r.target.note.empty() ? "" : " (" + r.target.note + ")") << "\n";
    }
    std::cout << "\n"
              << (missed == 0 ? "every target met" : std::to_string(missed) + " of " + std::to_string(met + missed) +
                                                         " targets missed (a measurement, not an error: the exit status stays 0)")
              << "\n";
    if (any_host_bound) {
      std::cout << "note: runs marked host-bound blocked the host while the stream was held, so their times include "
                   "host work\n";
    }
    std::cout.flush();
  }

  if (!mismatches.empty()) {
    std::string message = command + ": " + std::to_string(mismatches.size()) + " GEMM results outside the bound: ";
    for (std::size_t i = 0; i < mismatches.size(); ++i) message += (i ? "; " : "") + mismatches[i];
    throw Error(ErrorCode::kInternal, message,
                "a GEMM backend disagrees with the portable exact path beyond NUMERICS 7: a bug; the GPU tests "
                "(tests/cuda) narrow it down");
  }
}

#else  // !FP4KIT_HAVE_CUDA

void run_bench(const Benchmark& bench, const BenchArgs& args) {
  std::vector<Shape> shapes;
  if (const std::string reason = parse_shapes(args.shapes, shapes); !reason.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "--shapes: " + reason);
  }
  throw_no_gpu(bench.command,
               "this fp4kit was built without CUDA backends (FP4KIT_CUDA=OFF, or no nvcc when it was configured)");
}

void run_gemm_bench(const GemmBenchArgs& args) {
  std::vector<GemmShape> shapes;
  if (const std::string reason = parse_gemm_shapes(args.shapes, shapes); !reason.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "--shapes: " + reason);
  }
  throw_no_gpu("bench gemm",
               "this fp4kit was built without CUDA backends (FP4KIT_CUDA=OFF, or no nvcc when it was configured)");
}

#endif

}  // namespace

void add_bench_command(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Measure fp4kit's CUDA kernels against the GPU's own ceilings");
  bench->require_subcommand(1);
  bench->footer(
      "Each benchmark prints its figures beside a ceiling measured in the same run, checks the "
      "results while it runs (quantization: against the CPU reference; GEMMs: against the portable "
      "exact GEMM, within the NUMERICS 7 bound), and needs a CUDA GPU.");

  // What every benchmark measures the same way: the ceiling, the bytes, the inputs, the check.
  const std::string method =
      "Copy bandwidth: cudaMemcpyAsync of max(1 GiB, 4 x L2) device to device, read + write counted. "
      "Bytes of a quantization: the input read twice (amax pass and cast) plus the outputs written "
      "once. Inputs rotate through buffers exceeding twice the L2. The last run of each measurement "
      "is checked against the CPU reference: byte for byte for the first shape (up to 64 Mi "
      "elements), by amax and non-finite counts for the others; a mismatch exits 1. A missed target "
      "does not change the exit status.";
  const auto add_benchmark = [&](const char* name, const std::string& description, const std::string& modes,
                                 Benchmark benchmark) {
    auto args = std::make_shared<BenchArgs>();
    CLI::App* sub = bench->add_subcommand(name, description);
    sub->footer(modes + " " + method);
    sub->add_flag("--json", args->json, "Print one JSON object instead of the table");
    sub->add_option("--iters", args->iters, "Timed runs per measurement (median and min reported)")
        ->capture_default_str()
        ->check(CLI::Range(kMinTimedRuns, 1000000));
    sub->add_option("--shapes", args->shapes, "BF16 input shapes RxC, comma-separated (C a multiple of 16)")
        ->capture_default_str()
        ->check([](const std::string& text) -> std::string {
          std::vector<Shape> shapes;
          return parse_shapes(text, shapes);
        });
    sub->callback([args, benchmark = std::move(benchmark)] { run_bench(benchmark, *args); });
  };
  add_benchmark("quantize",
                "Time quantize_into (bf16 -> NVFP4, amax pass included) against the device copy bandwidth",
                "Modes per shape: rowwise+columnwise 1D RNE (target 0.80 of copy bandwidth), the same with "
                "stochastic rounding (0.70), rowwise only 1D RNE (0.80).",
                quantize_benchmark());
  const std::string budget = std::to_string(kSmallSmemBudget);
  add_benchmark("rht",
                "Time quantize_into with the RHT on the columnwise output (fused, fused under a " + budget +
                    "-byte shared-memory budget, unfused) against the device copy bandwidth",
                "Modes per shape, each rowwise + RHT columnwise 1D RNE (sign mask 0xD7E8): fused, under the "
                "device's full shared-memory budget (target 0.75 of copy bandwidth); fused @" + budget +
                    " B, the same under a " + budget + "-byte budget, the per-block limit of sm_86, sm_89 and "
                    "sm_12x GPUs (0.65); unfused, the fallback variant " + kUnfusedRhtVariant +
                    " forced (reported beside them, no target).",
                rht_benchmark());

  auto gemm_args = std::make_shared<GemmBenchArgs>();
  CLI::App* gemm_cmd = bench->add_subcommand(
      "gemm", "Time every CUDA NVFP4 GEMM variant (W4A4 and W4A16) and plain selection against cuBLAS BF16 and FP8");
  gemm_cmd->footer(
      std::string("Per shape (MxNxK, D[M, N] = A[M, K] . B[N, K]^T, bf16 output): the ceilings, cuBLASLt BF16 x BF16 and "
                  "E4M3 x E4M3 (FP32 compute, both operands K-major) and, for decode shapes, one read of B's NVFP4 "
                  "codes and scales by a read-only kernel (the weight stream's ceiling), then every CUDA GEMM variant "
                  "of this build forced in turn (an infeasible one shows its reason), W4A4 (A quantized 1D on the GPU "
                  "from random bf16) and "
                  "W4A16 (A bf16), B quantized 2D, then what plain selection picks. Each run is timed alone with its own "
                  "CUDA events after a write of twice the L2; the median of up to --iters runs after warm-up (fewer where "
                  "they would pass ") +
      fixed(kGemmTimeBudgetUs / 1e3, 0) + " ms, at least " + std::to_string(kGemmMinRuns) +
      "). Every fp4kit output is checked against " + kReferenceGemmVariant +
      "'s within the NUMERICS 7 bound (the sum of both backends' bounds); a mismatch exits 1. Targets: training shapes, " +
      kFusedGemmVariant + " W4A4 at >= " + fixed(kTrainingTarget, 2) + "x cuBLAS BF16 throughput; decode (M <= " +
      std::to_string(kDecodeMaxM) + "), the fastest fp4kit GEMM >= " + fixed(kDecodeTarget, 1) +
      "x faster than cuBLAS BF16, W4A4 and W4A16 each (the slower mode's speedup is the verdict). A missed "
      "target does not change the exit status.");
  gemm_cmd->add_flag("--json", gemm_args->json, "Print one JSON object instead of the tables");
  gemm_cmd->add_option("--iters", gemm_args->iters, "Timed runs per measurement, at most (median and min reported)")
      ->capture_default_str()
      ->check(CLI::Range(kMinGemmIters, 1000000));
  gemm_cmd->add_option("--shapes", gemm_args->shapes, "GEMM shapes MxNxK, comma-separated (N and K multiples of 16)")
      ->capture_default_str()
      ->check([](const std::string& text) -> std::string {
        std::vector<GemmShape> shapes;
        return parse_gemm_shapes(text, shapes);
      });
  gemm_cmd->callback([gemm_args] { run_gemm_bench(*gemm_args); });
}

}  // namespace fp4kit::cli

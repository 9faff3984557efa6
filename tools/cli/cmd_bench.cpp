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
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <charconv>
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
#include "fp4kit/ops.hpp"
#include "fp4kit/tensor.hpp"

#if defined(FP4KIT_HAVE_CUDA)
#include <cuda_runtime.h>
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
// timing the last `iters` with one pair of events each.
template <typename Run>
Timing time_runs(cudaStream_t stream, int warmup, int iters, const Run& run) {
  Events start(iters), stop(iters);
  StreamGate gate(stream);
  for (int i = 0; i < warmup; ++i) {
    gate.hold();
    run(i);
    gate.release();
  }
  FP4KIT_BENCH_CUDA(cudaStreamSynchronize(stream));
  const int warmup_timeouts = gate.timeouts();
  for (int i = 0; i < iters; ++i) {
    gate.hold();
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
      j["device"] = {{"name", device.name},
                     {"label", device.label()},
                     {"compute_capability", device.compute_capability()},
                     {"sm_count", device.sm_count},
                     {"l2_bytes", device.l2_bytes},
                     {"global_memory_bytes", device.global_memory_bytes},
                     {"runtime_version", device.runtime_version},
                     {"driver_version", device.driver_version}};
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

#else  // !FP4KIT_HAVE_CUDA

void run_bench(const Benchmark& bench, const BenchArgs& args) {
  std::vector<Shape> shapes;
  if (const std::string reason = parse_shapes(args.shapes, shapes); !reason.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "--shapes: " + reason);
  }
  throw_no_gpu(bench.command,
               "this fp4kit was built without CUDA backends (FP4KIT_CUDA=OFF, or no nvcc when it was configured)");
}

#endif

}  // namespace

void add_bench_command(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Measure fp4kit's CUDA kernels against the GPU's own ceilings");
  bench->require_subcommand(1);
  bench->footer(
      "Each benchmark prints its figures beside a ceiling measured in the same run, checks the "
      "results against the CPU reference while it runs, and needs a CUDA GPU.");

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
}

}  // namespace fp4kit::cli

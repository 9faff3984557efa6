// The CUDA kernel variants of this build, registered with their specs: capabilities, the
// architectures compiled, configurations with the same shared-memory formula the kernels
// static_assert against, and problem rules. Without CUDA backends there are none.
#include "dispatch/variants.hpp"

#include <span>

#if defined(FP4KIT_HAVE_CUDA)
#include "core/check.hpp"
#include "cuda/gemm/launch.hpp"
#include "cuda/gemm/sm90_gemm_config.hpp"
#include "cuda/quantize/cast_config.hpp"
#include "cuda/quantize/launch.hpp"
#endif

namespace fp4kit::detail {

#if defined(FP4KIT_HAVE_CUDA)

namespace {

// Highest compute capability these sm_80 kernels are known to run on: their PTX runs forward.
constexpr int kMaxKnownCc = 121;

bool is_float_input(DType d) { return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16; }

// Loads of `bytes` bytes (16: the casts' vectors; 4: the unfused RHT transform's words) need a
// base aligned to them, rows that start on them, and whole 16-element blocks per row.
std::string load_rule(const Problem& p, int64_t bytes) {
  const int64_t elem = static_cast<int64_t>(dtype_size(p.in_dtype));
  const int64_t stride = p.row_stride ? p.row_stride : p.cols;
  if (p.alignment < bytes) return cat("needs a ", bytes, "-byte aligned source; this one is aligned to ", p.alignment, " B");
  if ((stride * elem) % bytes != 0) return cat("needs rows starting on ", bytes, " bytes; the row stride is ", stride * elem, " B");
  if (p.cols % 16 != 0) return cat("needs a column count that is a multiple of 16, got ", p.cols);
  return {};
}

KernelVariant cuda_variant(const char* name, OpKind op, const char* description) {
  KernelVariant v;
  v.name = name;
  v.op = op;
  v.device_type = DeviceType::kCuda;
  v.min_cc = 80;
  v.max_cc = kMaxKnownCc;
  v.compiled_archs = built_cuda_archs();
  v.description = description;
  v.check_image = [](const DeviceInfo& d) { return cuda::quantize_image_problem(d); };
  return v;
}

}  // namespace

void register_cuda_variants(Registry& registry) {
  KernelVariant amax = cuda_variant("sm80_amax", OpKind::kAmax, "amax, 16-byte loads where aligned; per tensor or per row");
  amax.configs = {KernelConfig{"256t", 0, 0, 0, 1, 256}};
  amax.smem_bytes = [](const KernelConfig&) -> int64_t { return 8 * 12; };  // one partial per warp
  amax.check_problem = [](const Problem& p) -> std::string {
    // Any layout: 16-byte loads where the source allows them, element loads elsewhere.
    return is_float_input(p.in_dtype) ? "" : cat("takes f32, f16 or bf16, not ", dtype_name(p.in_dtype));
  };
  registry.add(std::move(amax));

  // One variant per element width and family: the tile, hence the shared memory, depends on the
  // width. The three families share the cast kernel and its one shared-memory formula:
  //  - the plain cast;
  //  - the fused RHT cast (rowwise of x, columnwise of RHT(x^T)): its own configurations, none
  //    below 65536 B, so that smaller budgets select
  //  - the unfused RHT path (fallback): the transform into a buffer, then plain casts with the plain
  //    configurations. It also serves sources the fused kernel cannot read (4-byte aligned words
  //    are enough for its transform when only the columnwise part is asked for).
  enum class Family { kPlain, kRht, kRhtUnfused };
  for (const Family family : {Family::kPlain, Family::kRht, Family::kRhtUnfused}) {
    for (int elem : {2, 4}) {
      const char* width = elem == 2 ? "b16" : "f32";
      const char* name = family == Family::kPlain ? "sm80_quantize_"
                         : family == Family::kRht ? "sm80_quantize_rht_"
                                                  : "sm80_rht_unfused_";
      KernelVariant q = cuda_variant(
          "", OpKind::kQuantize,
          family == Family::kPlain ? "one-pass NVFP4 cast: cp.async-pipelined shared tiles, a thread per block, both directions"
          : family == Family::kRht ? "one-pass NVFP4 cast with the RHT of the columnwise part (the transform in registers)"
                                   : "the RHT into a device buffer, then the plain cast (slower: x is read again)");
      q.name = cat(name, width);
      q.fallback = family == Family::kRhtUnfused;
      for (const cuda::CastShape& shape : family == Family::kRht ? std::span<const cuda::CastShape>(cuda::kRhtCastShapes)
                                                                  : std::span<const cuda::CastShape>(cuda::kCastShapes)) {
        const int cols = cuda::cast_tile_cols(elem);
        q.configs.push_back(KernelConfig{cat(shape.tile_rows, "x", cols, "_s", shape.stages), shape.tile_rows, cols, 0,
                                         shape.stages, cuda::cast_threads(shape.tile_rows)});
      }
      q.smem_bytes = [](const KernelConfig& c) { return cuda::cast_smem_bytes(c.tile_m, c.stages); };
      q.check_problem = [elem, family](const Problem& p) -> std::string {
        if (!is_float_input(p.in_dtype)) return cat("takes f32, f16 or bf16, not ", dtype_name(p.in_dtype));
        if (static_cast<int>(dtype_size(p.in_dtype)) != elem) {
          return cat("is the ", elem == 2 ? "16-bit" : "f32", " variant; the source is ", dtype_name(p.in_dtype));
        }
        if (family == Family::kPlain) {
          if (p.params.rht) return "does not apply the RHT (the RHT cast kernels do)";
          return load_rule(p, 16);
        }
        if (!p.params.rht) return "applies the RHT, which this quantization does not ask for";
        if (family == Family::kRht || has_rowwise(p.params.direction)) return load_rule(p, 16);
        return load_rule(p, 4);
      };
      registry.add(std::move(q));
    }
  }

  // The fused sm_90a GEMM: only an sm_90a image serves it (wgmma, setmaxnreg); its configurations
  // come from sm90_gemm_config.hpp with the formula the kernel allocates by.
  KernelVariant sm90 = cuda_variant("sm90_gemm_nvfp4", OpKind::kGemm,
                                    "fused NVFP4 GEMM: bulk-copied codes, exact BF16 values on chip, wgmma with FP32 "
                                    "accumulation, the contract's epilogue");
  sm90.min_cc = 90;
  sm90.max_cc = 90;
  sm90.compiled_archs.clear();
  for (const std::string& arch : built_cuda_archs()) {
    if (arch == "90a") sm90.compiled_archs.push_back(arch);
  }
  for (const cuda::Sm90GemmShape& shape : cuda::kSm90GemmShapes) {
    sm90.configs.push_back(KernelConfig{cat(cuda::kSm90TileM, "x", shape.tile_n, "_s", shape.stages), cuda::kSm90TileM,
                                        shape.tile_n, cuda::kSm90StageK, shape.stages, cuda::kSm90Threads});
  }
  sm90.smem_bytes = [](const KernelConfig& c) { return cuda::sm90_gemm_smem_bytes(c.tile_n, c.stages); };
  sm90.check_problem = [](const Problem& p) -> std::string {
    if (!p.a_nvfp4 || !p.b_nvfp4) {
      return "multiplies NVFP4 by NVFP4; a dense A (W4A16) or B goes to the other GEMM backends";
    }
    // The scales move as 16-byte rows per 256-element stage (the bulk copy's smallest row).
    if (p.k % cuda::kSm90StageK != 0) return cat("needs K a multiple of ", cuda::kSm90StageK, "; K is ", p.k);
    return {};
  };
  sm90.check_image = [](const DeviceInfo& d) { return cuda::sm90_gemm_image_problem(d); };
  registry.add(std::move(sm90));

  // The portable exact GEMM: a fallback (the fused sm_90a kernels will rank above it), no shared
  // memory, any CUDA GPU cuBLASLt runs on.
  KernelVariant gemm = cuda_variant("gemm_dequant_cublaslt", OpKind::kGemm,
                                    "exact fallback: block values to BF16 in device memory, cuBLASLt BF16 GEMM with FP32 "
                                    "accumulation, the contract's epilogue");
  gemm.fallback = true;
  gemm.configs = {KernelConfig{"default", 0, 0, 0, 1, 256}};
  gemm.smem_bytes = [](const KernelConfig&) -> int64_t { return 0; };
  gemm.check_problem = [](const Problem& p) -> std::string {
    if (!p.a_nvfp4 && p.in_dtype != DType::kBF16) return cat("takes an NVFP4 or a BF16 A, not ", dtype_name(p.in_dtype));
    return {};
  };
  gemm.check_image = [](const DeviceInfo& d) { return cuda::gemm_image_problem(d); };
  registry.add(std::move(gemm));

  // Backend 3, the small-M (decode) kernel: streams the NVFP4 weight at memory bandwidth past at
  // most 64 activation rows. Not a fallback; it outranks the fused sm_90a kernel (priority 0),
  // which takes M > 64. A configuration is a shared-memory cap: a ring of `stages` 128-element K
  // stages at M = 64 (256 weight rows' codes and scales, 64 activation rows: the largest stage).
  // The largest cap that fits the budget wins (the comparator's stages rule); within it the
  // launcher runs the ring it measured fastest (the run kernel at M <= 8: two buffers and its decode
  // tables; the chunk kernel: two stages in flight), or mma.sync with two buffers where only the
  // smallest fits.
  KernelVariant smallm = cuda_variant("sm80_gemm_smallm", OpKind::kGemm,
                                      "small-M (decode) GEMM: NVFP4 weights streamed by cp.async and decoded in registers "
                                      "(M <= 8: one kernel, 512-byte runs per row, A decoded in the stream), split K with a "
                                      "deterministic FP32 reduction, the contract's epilogue");
  smallm.priority = 10;
  for (const int stages : {6, 4, 2}) {
    smallm.configs.push_back(KernelConfig{cat("m64_k128_s", stages), 64, 256, 128, stages, 512});
  }
  smallm.smem_bytes = [](const KernelConfig& c) { return cuda::smallm_smem_bytes(c.tile_m, c.tile_k, c.stages); };
  smallm.check_problem = [](const Problem& p) -> std::string {
    if (p.rows > 64) return cat("serves M <= 64 (decode); M is ", p.rows);
    if (!p.b_nvfp4) return "streams an NVFP4 weight B; a dense B goes to the portable path";
    if (!p.a_nvfp4 && p.in_dtype != DType::kBF16) return cat("takes an NVFP4 or a BF16 A, not ", dtype_name(p.in_dtype));
    if (p.k % 16 != 0) return cat("needs K a multiple of 16; K is ", p.k);
    return {};
  };
  smallm.check_image = [](const DeviceInfo& d) { return cuda::smallm_image_problem(d); };
  registry.add(std::move(smallm));

  // Backend 3 on Hopper: the sm_90a small-M kernel serves the same decode problems (K % 256 == 0) with
  // the bulk tensor copy engine, wgmma and split K summed by each row block's last CTA (no second
  // kernel); it outranks sm80_gemm_smallm, which keeps M <= 8, the other GPUs, K and budgets. A
  // configuration is the ring depth at 256 rows and M = 64 (its shared memory is the cap; 128-row
  // blocks and smaller activation tiles fit deeper rings within it).
  KernelVariant smallm90 = cuda_variant("sm90_gemm_smallm", OpKind::kGemm,
                                        "small-M (decode) GEMM for Hopper: NVFP4 weights bulk-copied and decoded in "
                                        "registers, wgmma with the activations in shared memory, split K summed in split "
                                        "order by the last CTA (deterministic), the contract's epilogue");
  smallm90.min_cc = 90;
  smallm90.max_cc = 90;
  smallm90.compiled_archs.clear();
  for (const std::string& arch : built_cuda_archs()) {
    if (arch == "90a") smallm90.compiled_archs.push_back(arch);
  }
  smallm90.priority = 20;
  for (const int stages : {3, 2}) {
    smallm90.configs.push_back(KernelConfig{cat("r256_s", stages), 64, cuda::kSm90SmallMRows, cuda::kSm90SmallMStageK,
                                            stages, cuda::kSm90SmallMThreads});
  }
  smallm90.smem_bytes = [](const KernelConfig& c) { return cuda::sm90_smallm_smem_bytes(c.tile_n, c.tile_m, c.stages); };
  smallm90.check_problem = [](const Problem& p) -> std::string {
    if (p.rows > 64) return cat("serves M <= 64 (decode); M is ", p.rows);
    // Measured on the H100 (fp4kit bench gemm, 1 x 8192 x 8192): sm80_gemm_smallm's run kernel, which
    // decodes A's own bytes in each stage (no prepare kernel), 26.8 us; this kernel 32 us.
    if (p.rows <= 8) return cat("serves 8 < M <= 64; M = ", p.rows, " goes to sm80_gemm_smallm's run kernel (faster there)");
    if (!p.b_nvfp4) return "streams an NVFP4 weight B; a dense B goes to the portable path";
    if (!p.a_nvfp4 && p.in_dtype != DType::kBF16) return cat("takes an NVFP4 or a BF16 A, not ", dtype_name(p.in_dtype));
    // The scales move as 16-byte rows per 256-element stage (the bulk copy's smallest row).
    if (p.k % cuda::kSm90SmallMStageK != 0) return cat("needs K a multiple of ", cuda::kSm90SmallMStageK, "; K is ", p.k);
    return {};
  };
  smallm90.check_image = [](const DeviceInfo& d) { return cuda::sm90_smallm_image_problem(d); };
  registry.add(std::move(smallm90));

  // Backend 4: Blackwell's native block-scaled FP4 GEMM through cuBLASLt (compile-only where no
  // such GPU is at hand). It runs where the FP4 tensor cores are (sm_100 and newer) and the loaded
  // cuBLASLt has them; cuBLASLt's heuristic picks the tactic, and finding none is a clear error at
  // launch.
  KernelVariant lt4 = cuda_variant("sm100_gemm_cublaslt_nvfp4", OpKind::kGemm,
                                   "native block-scaled FP4 GEMM through cuBLASLt (E2M1 x E2M1, UE4M3 scales per 16 "
                                   "elements, FP32 compute), the contract's alpha computed on the device");
  lt4.min_cc = 100;
  lt4.min_cublaslt = 120800;  // cuBLAS 12.8 brought CUDA_R_4F_E2M1 with CUBLASLT_MATMUL_MATRIX_SCALE_VEC16_UE4M3
  // Native FP4 tensor cores outrank every kernel that emulates them, whatever their order among
  // themselves (tests/cpu/test_sm100_gemm_dispatch.cpp checks it against every GEMM variant).
  lt4.priority = 100;
  lt4.configs = {KernelConfig{"cublaslt_heuristic", 0, 0, 0, 1, 0}};
  lt4.smem_bytes = [](const KernelConfig&) -> int64_t { return 0; };  // cuBLASLt's kernels size their own
  lt4.check_problem = [](const Problem& p) -> std::string {
    if (!p.a_nvfp4 || !p.b_nvfp4) {
      return "multiplies NVFP4 by NVFP4; a dense A (W4A16) or B goes to the other GEMM backends";
    }
    if (p.a_row_scaled) {
      return "applies one global scale per operand (cuBLASLt's alpha); a row-scaled A (per-row alpha) goes to the "
             "other GEMM backends";
    }
    // Leading dimensions of 16 bytes: cuBLASLt's rule for its narrow-type operands.
    if (p.k % 32 != 0) return cat("needs K a multiple of 32 (16-byte rows of E2M1 codes); K is ", p.k);
    return {};
  };
  lt4.check_image = [](const DeviceInfo& d) { return cuda::gemm_sm100_cublaslt_image_problem(d); };
  registry.add(std::move(lt4));

  KernelVariant dq = cuda_variant("sm80_dequantize", OpKind::kDequantize, "NVFP4 to f32/f16/bf16, a block per thread");
  dq.configs = {KernelConfig{"256t", 0, 0, 0, 1, 256}};
  dq.smem_bytes = [](const KernelConfig&) -> int64_t { return 0; };
  dq.check_problem = [](const Problem& p) -> std::string {
    if (!is_float_input(p.out_dtype)) return cat("writes f32, f16 or bf16, not ", dtype_name(p.out_dtype));
    if (p.params.rht && p.params.direction == Direction::kColumnwise) {
      return "does not invert the RHT (the RHT kernels do)";
    }
    return {};
  };
  registry.add(std::move(dq));
}

#else

void register_cuda_variants(Registry&) {}  // built without CUDA backends: no CUDA kernel exists

#endif

}  // namespace fp4kit::detail

// The recipe (roles, environment, invalid combinations) and the documented errors of bad inputs.
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <string>

#include "dispatch/variants.hpp"
#include "test_util.hpp"

namespace fp4kit {
namespace {

using test::HostMatrix;

// Sets environment variables for one scope and restores them after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    setenv(name, value, 1);
  }
  ~ScopedEnv() { had_ ? setenv(name_, old_.c_str(), 1) : unsetenv(name_); }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

TEST(Recipe, DefaultsDeriveEveryRole) {
  const Recipe r;
  const QuantParams fi = r.params(OperandRole::kFpropInput);
  EXPECT_EQ(fi.direction, Direction::kRowwise);
  EXPECT_EQ(fi.block, BlockScaling::k1D);
  EXPECT_EQ(fi.rounding, Rounding::kNearest);
  EXPECT_FALSE(fi.row_scaled);
  const QuantParams fw = r.params(OperandRole::kFpropWeight);
  EXPECT_EQ(fw.block, BlockScaling::k2D);
  EXPECT_EQ(fw.rounding, Rounding::kNearest);
  const QuantParams dg = r.params(OperandRole::kDgradGrad, 5);
  EXPECT_EQ(dg.direction, Direction::kRowwise);
  EXPECT_EQ(dg.rounding, Rounding::kStochastic);
  EXPECT_EQ(dg.sr_seed, r.sr_seed);
  EXPECT_EQ(dg.sr_offset, 5u);
  const QuantParams dw = r.params(OperandRole::kDgradWeight);
  EXPECT_EQ(dw.direction, Direction::kColumnwise);
  EXPECT_EQ(dw.block, BlockScaling::k2D);
  const QuantParams wi = r.params(OperandRole::kWgradInput);
  EXPECT_EQ(wi.direction, Direction::kColumnwise);
  EXPECT_TRUE(wi.rht);
  EXPECT_EQ(wi.rht_mask, 0xD7E8);
  EXPECT_EQ(wi.rounding, Rounding::kNearest);
  const QuantParams wg = r.params(OperandRole::kWgradGrad);
  EXPECT_TRUE(wg.rht);
  EXPECT_EQ(wg.rounding, Rounding::kStochastic);
}

TEST(Recipe, DisablingFieldsChangesTheRoles) {
  Recipe r;
  r.disable_rht = r.disable_stochastic_rounding = r.disable_2d_quantization = true;
  r.row_scaled_activation = true;
  EXPECT_TRUE(r.params(OperandRole::kFpropInput).row_scaled);
  EXPECT_EQ(r.params(OperandRole::kFpropWeight).block, BlockScaling::k1D);
  EXPECT_EQ(r.params(OperandRole::kDgradGrad).rounding, Rounding::kNearest);
  EXPECT_FALSE(r.params(OperandRole::kWgradGrad).rht);
}

TEST(Recipe, InvalidCombinationsNameTheFieldToChange) {
  struct Case { bool rht, sr, twod; const char* field; };
  for (const Case& c : {Case{false, true, true, "disable_rht"}, Case{true, false, true, "disable_stochastic_rounding"},
                        Case{true, true, false, "disable_2d_quantization"}}) {
    Recipe r;
    r.row_scaled_activation = true;
    r.disable_rht = c.rht;
    r.disable_stochastic_rounding = c.sr;
    r.disable_2d_quantization = c.twod;
    try {
      r.validate();
      ADD_FAILURE() << "expected an error for " << c.field;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidRecipe);
      EXPECT_NE(e.hint().find(c.field), std::string::npos) << e.what();
      EXPECT_NE(e.hint().find("row_scaled_activation=false"), std::string::npos) << e.what();
    }
    EXPECT_THROW(r.params(OperandRole::kFpropInput), Error);
  }
}

TEST(Recipe, EnvironmentOverridesAndStrictParsing) {
  {
    ScopedEnv a("FP4KIT_NVFP4_DISABLE_RHT", "1"), b("FP4KIT_NVFP4_RHT_MASK", "0x0000"),
        c("FP4KIT_NVFP4_SR_SEED", "12345"), d("FP4KIT_NVFP4_DISABLE_2D_QUANTIZATION", "true");
    const Recipe r = Recipe::from_env();
    EXPECT_TRUE(r.disable_rht);
    EXPECT_EQ(r.rht_mask, 0);
    EXPECT_EQ(r.sr_seed, 12345u);
    EXPECT_TRUE(r.disable_2d_quantization);
    EXPECT_FALSE(r.disable_stochastic_rounding);
  }
  {
    ScopedEnv a("FP4KIT_NVFP4_DISABLE_RHT", "maybe");
    try {
      Recipe::from_env();
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidRecipe);
      EXPECT_NE(std::string(e.what()).find("FP4KIT_NVFP4_DISABLE_RHT"), std::string::npos);
    }
  }
  {
    ScopedEnv a("FP4KIT_NVFP4_RHT_MASK", "0x10000");  // 17 bits
    EXPECT_THROW(Recipe::from_env(), Error);
  }
  {
    ScopedEnv a("FP4KIT_NVFP4_ROW_SCALED_ACTIVATION", "1");  // with RHT on: invalid
    EXPECT_THROW(Recipe::from_env(), Error);
  }
  EXPECT_EQ(Recipe::from_env().rht_mask, kDefaultRhtMask);
}

TEST(Recipe, RoleNamesAndDescriptions) {
  for (int i = 0; i < kNumOperandRoles; ++i) {
    const OperandRole role = static_cast<OperandRole>(i);
    EXPECT_EQ(parse_role(role_name(role)), role);
  }
  EXPECT_THROW(parse_role("fprop"), Error);
  const Recipe r;
  EXPECT_NE(r.describe().find("mask=0xd7e8"), std::string::npos) << r.describe();
  EXPECT_NE(r.to_json().find("\"rht_mask\": \"0xd7e8\""), std::string::npos) << r.to_json();
}

// ---------------------------------------------------------------------------------------------

ErrorCode code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_FALSE(e.message().empty());
    return e.code();
  }
  return ErrorCode::kOk;
}

TEST(Errors, QuantizeRejectsBadInputsWithDocumentedCodes) {
  HostMatrix x24(2, 24), x32(2, 32);
  EXPECT_EQ(code_of([&] { quantize(x24.view(), QuantParams{}); }), ErrorCode::kShapeMismatch);
  try {
    quantize(x24.view(), QuantParams{});
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("multiple of 16"), std::string::npos);
    EXPECT_FALSE(e.hint().empty());
  }
  TensorView null_view = x32.view();
  null_view.data = nullptr;
  EXPECT_EQ(code_of([&] { quantize(null_view, QuantParams{}); }), ErrorCode::kNullPointer);
  std::vector<uint8_t> bytes(64);
  EXPECT_EQ(code_of([&] { quantize(TensorView::matrix(bytes.data(), DType::kU8, 2, 32), QuantParams{}); }),
            ErrorCode::kDtypeMismatch);
  TensorView strided = x32.view();
  strided.strides[1] = 2;
  strided.shape[1] = 16;
  EXPECT_EQ(code_of([&] { quantize(strided, QuantParams{}); }), ErrorCode::kLayout);
  TensorView rank5 = x32.view();
  rank5.rank = 5;
  EXPECT_EQ(code_of([&] { quantize(rank5, QuantParams{}); }), ErrorCode::kInvalidArgument);

  QuantParams bad;
  bad.row_scaled = true;
  bad.direction = Direction::kBoth;
  EXPECT_EQ(code_of([&] { quantize(x32.view(), bad); }), ErrorCode::kInvalidArgument);
  bad = {};
  bad.rht = true;  // rowwise only
  EXPECT_EQ(code_of([&] { quantize(x32.view(), bad); }), ErrorCode::kInvalidArgument);
  bad = {};
  bad.row_scaled = true;
  bad.rounding = Rounding::kStochastic;
  EXPECT_EQ(code_of([&] { quantize(x32.view(), bad); }), ErrorCode::kInvalidArgument);
  // A host tensor with a CUDA target is a mismatch. A CUDA tensor under a registry holding only the
  // CPU reference has no backend: kUnsupported, whether or not this machine has a GPU or a CUDA
  // build (without them, the device query itself is refused with the same code).
  EXPECT_EQ(code_of([&] { quantize(x32.view(), QuantParams{}, Target::cuda()); }), ErrorCode::kInvalidArgument);
  TensorView on_gpu = x32.view();
  on_gpu.device = {DeviceType::kCuda, 0};  // never dereferenced: the call fails at selection
  Registry reference_only;
  detail::register_reference_variants(reference_only);
  Context cpu_only(DispatchSettings{}, std::move(reference_only));
  EXPECT_EQ(code_of([&] { quantize(on_gpu, QuantParams{}, Target::cuda(0, nullptr, &cpu_only)); }),
            ErrorCode::kUnsupported);

  Nvfp4Tensor wrong = Nvfp4Tensor::allocate(3, 32, DType::kF32, QuantParams{});
  EXPECT_EQ(code_of([&] { quantize_into(x32.view(), QuantParams{}, wrong); }), ErrorCode::kShapeMismatch);
}

TEST(Errors, DequantizeAndGemmRejectMismatches) {
  HostMatrix x(4, 32);
  const Nvfp4Tensor q = quantize(x.view(), QuantParams{});
  HostMatrix wrong(4, 16), right(4, 32);
  EXPECT_EQ(code_of([&] { dequantize(q, Direction::kRowwise, wrong.view()); }), ErrorCode::kShapeMismatch);
  EXPECT_EQ(code_of([&] { dequantize(q, Direction::kColumnwise, right.view()); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { dequantize(q, Direction::kBoth, right.view()); }), ErrorCode::kInvalidArgument);

  HostMatrix b(8, 48);
  const Nvfp4Tensor qb = quantize(b.view(), QuantParams{});
  HostMatrix d(4, 8);
  EXPECT_EQ(code_of([&] { gemm(GemmOperand::quantized(q), GemmOperand::quantized(qb), d.view()); }),
            ErrorCode::kShapeMismatch);
  HostMatrix b32(8, 32);
  const Nvfp4Tensor qb32 = quantize(b32.view(), QuantParams{});
  HostMatrix d_wrong(4, 9);
  EXPECT_EQ(code_of([&] { gemm(GemmOperand::quantized(q), GemmOperand::quantized(qb32), d_wrong.view()); }),
            ErrorCode::kShapeMismatch);
  GemmOptions beta_without_c;
  beta_without_c.beta = 1.0f;
  EXPECT_EQ(code_of([&] { gemm(GemmOperand::quantized(q), GemmOperand::quantized(qb32), d.view(), beta_without_c); }),
            ErrorCode::kNullPointer);
  std::vector<uint8_t> u8(4 * 8);
  EXPECT_EQ(code_of([&] {
              gemm(GemmOperand::quantized(q), GemmOperand::quantized(qb32), TensorView::matrix(u8.data(), DType::kU8, 4, 8));
            }),
            ErrorCode::kDtypeMismatch);
  EXPECT_EQ(code_of([&] { gemm(GemmOperand::quantized(q, Direction::kColumnwise), GemmOperand::quantized(qb32), d.view()); }),
            ErrorCode::kInvalidArgument);
}

TEST(Errors, MessagesCarryTheHintInWhat) {
  const Error e(ErrorCode::kShapeMismatch, "x is wrong", "make it right");
  EXPECT_STREQ(e.what(), "x is wrong (hint: make it right)");
  EXPECT_STREQ(error_code_name(ErrorCode::kInvalidRecipe), "invalid_recipe");
}

}  // namespace
}  // namespace fp4kit

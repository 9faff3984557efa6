// The CLI's tensor files (tools/cli/io.hpp): .npy and .safetensors round trips for every dtype, the
// byte layout of what we write, and one test per malformed file, each checking the error's code, that
// its message names the file and the problem, and that it carries a hint.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "fp4kit/error.hpp"
#include "fp4kit/formats.hpp"
#include "fp4kit/ops.hpp"
#include "io.hpp"
#include "test_util.hpp"

namespace fp4kit::cli {
namespace {

using test::catch_error;
using test::Caught;

// A scratch file path unique to the running test.
std::string scratch(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::filesystem::path dir =
      std::filesystem::path(FP4KIT_TEST_TMPDIR) / "io" / (std::string(info->test_suite_name()) + "." + info->name());
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

::testing::AssertionResult contains(const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << haystack << "\" does not contain \"" << needle << "\"";
}

// Expects an Error(kIo) whose message names `path` and contains `problem`, with a non-empty hint.
void expect_io_error(const std::function<void()>& f, const std::string& path, const std::string& problem) {
  const Caught c = catch_error(f);
  ASSERT_TRUE(c.thrown) << "expected fp4kit::Error mentioning \"" << problem << "\"";
  EXPECT_EQ(c.code, ErrorCode::kIo) << c.message;
  EXPECT_TRUE(contains(c.message, path));
  EXPECT_TRUE(contains(c.message, problem));
  EXPECT_FALSE(c.hint.empty()) << c.message;
}

// Deterministic, non-repeating bytes so that a misplaced byte is always seen.
HostTensor patterned(DType dtype, std::vector<int64_t> shape, uint32_t seed) {
  HostTensor t = HostTensor::zeros(dtype, std::move(shape));
  uint32_t s = seed * 2654435761u + 1u;
  for (uint8_t& b : t.bytes) {
    s = s * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(s >> 24);
  }
  return t;
}

std::vector<uint8_t> le_bytes(uint64_t v, int n) {
  std::vector<uint8_t> out;
  for (int i = 0; i < n; ++i) out.push_back(static_cast<uint8_t>((v >> (8 * i)) & 0xFFu));
  return out;
}

// A hand-built .npy file: magic, version, header length (2 bytes for 1.x, 4 for 2.x/3.x), header
// padded to 64 like NumPy does, data.
std::vector<uint8_t> npy_bytes(int major, const std::string& dict, const std::vector<uint8_t>& data) {
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  std::string header = dict;
  const std::size_t prefix = 8 + len_bytes;
  while ((prefix + header.size() + 1) % 64 != 0) header.push_back(' ');
  header.push_back('\n');
  std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), 0};
  const auto len = le_bytes(header.size(), static_cast<int>(len_bytes));
  out.insert(out.end(), len.begin(), len.end());
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

// A hand-built .safetensors file from a JSON header string and a byte buffer.
std::vector<uint8_t> safetensors_bytes(const std::string& json, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out = le_bytes(json.size(), 8);
  out.insert(out.end(), json.begin(), json.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

// ---------------------------------------------------------------------------------------------
// .npy
// ---------------------------------------------------------------------------------------------

TEST(Npy, RoundTripsEveryDtypeAndRank) {
  const DType dtypes[] = {DType::kF32, DType::kF16, DType::kU8, DType::kU32};
  const std::vector<std::vector<int64_t>> shapes = {{}, {7}, {3, 5}, {2, 3, 4}, {2, 1, 3, 2}, {0, 4}};
  uint32_t seed = 1;
  for (DType dtype : dtypes) {
    for (const auto& shape : shapes) {
      const HostTensor t = patterned(dtype, shape, seed++);
      const std::string path = scratch(std::string(dtype_name(dtype)) + "_" + std::to_string(seed) + ".npy");
      write_npy(path, t);
      const HostTensor back = read_npy(path);
      EXPECT_EQ(back.dtype, t.dtype) << t.describe();
      EXPECT_EQ(back.shape, t.shape) << t.describe();
      EXPECT_EQ(back.bytes, t.bytes) << t.describe();
    }
  }
}

TEST(Npy, WritesVersion1WithDataAlignedTo64) {
  const HostTensor t = patterned(DType::kF32, {3, 16}, 9);
  const std::string path = scratch("x.npy");
  write_npy(path, t);
  const std::vector<uint8_t> file = read_file_bytes(path);
  ASSERT_GE(file.size(), 10u);
  EXPECT_EQ(std::memcmp(file.data(), "\x93NUMPY\x01\x00", 8), 0);
  const std::size_t header_len = file[8] | (file[9] << 8);
  const std::size_t data_start = 10 + header_len;
  EXPECT_EQ(data_start % 64, 0u);
  EXPECT_EQ(file[data_start - 1], '\n');
  const std::string header(reinterpret_cast<const char*>(file.data() + 10), header_len);
  EXPECT_TRUE(contains(header, "'descr': '<f4'"));
  EXPECT_TRUE(contains(header, "'fortran_order': False"));
  EXPECT_TRUE(contains(header, "'shape': (3, 16)"));
  ASSERT_EQ(file.size(), data_start + t.bytes.size());
  EXPECT_TRUE(std::equal(t.bytes.begin(), t.bytes.end(), file.begin() + static_cast<std::ptrdiff_t>(data_start)));
}

TEST(Npy, WritesOneTupleForRank1) {
  const std::string path = scratch("v.npy");
  write_npy(path, patterned(DType::kU8, {5}, 3));
  const std::vector<uint8_t> file = read_file_bytes(path);
  const std::string header(file.begin() + 10, file.begin() + 10 + (file[8] | (file[9] << 8)));
  EXPECT_TRUE(contains(header, "'shape': (5,)"));
  EXPECT_TRUE(contains(header, "'descr': '|u1'"));
}

TEST(Npy, ReadsVersions2And3AndLittleEndianU1) {
  const std::vector<uint8_t> data = {1, 2, 3, 4, 5, 6, 7, 8};
  for (int major : {2, 3}) {
    const std::string path = scratch("v" + std::to_string(major) + ".npy");
    write_file_bytes(path, npy_bytes(major, "{'descr': '<u4', 'fortran_order': False, 'shape': (2,), }", data));
    const HostTensor t = read_npy(path);
    EXPECT_EQ(t.dtype, DType::kU32);
    EXPECT_EQ(t.shape, std::vector<int64_t>{2});
    EXPECT_EQ(t.bytes, data);
  }
  const std::string path = scratch("u1.npy");
  // Double quotes, other key order, no trailing comma: all valid Python dict literals.
  write_file_bytes(path, npy_bytes(1, "{\"shape\": (2, 4), \"descr\": \"<u1\", \"fortran_order\": False}", data));
  const HostTensor t = read_npy(path);
  EXPECT_EQ(t.dtype, DType::kU8);
  EXPECT_EQ(t.shape, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(t.bytes, data);
}

TEST(Npy, RejectsBadMagic) {
  const std::string path = scratch("bad.npy");
  std::vector<uint8_t> file = npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", {0, 0, 0, 0});
  file[1] = 'X';
  write_file_bytes(path, file);
  expect_io_error([&] { read_npy(path); }, path, "bad magic");
}

TEST(Npy, RejectsTruncatedData) {
  const std::string path = scratch("short.npy");
  // [2, 3] float32 needs 24 bytes; give 20.
  write_file_bytes(path, npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                                   std::vector<uint8_t>(20, 0)));
  expect_io_error([&] { read_npy(path); }, path, "truncated");
}

TEST(Npy, RejectsTruncatedHeader) {
  const std::string path = scratch("short_header.npy");
  std::vector<uint8_t> file = npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", {});
  file.resize(30);
  write_file_bytes(path, file);
  expect_io_error([&] { read_npy(path); }, path, "truncated");
}

TEST(Npy, RejectsFortranOrder) {
  const std::string path = scratch("fortran.npy");
  write_file_bytes(path, npy_bytes(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                                   std::vector<uint8_t>(16, 0)));
  expect_io_error([&] { read_npy(path); }, path, "Fortran");
}

TEST(Npy, RejectsFloat64WithAHintToConvert) {
  const std::string path = scratch("f8.npy");
  write_file_bytes(path, npy_bytes(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
                                   std::vector<uint8_t>(16, 0)));
  expect_io_error([&] { read_npy(path); }, path, "float64");
  const Caught c = catch_error([&] { read_npy(path); });
  EXPECT_TRUE(contains(c.hint, "float32"));
}

TEST(Npy, RejectsBigEndianAndUnknownTypes) {
  const std::string be = scratch("be.npy");
  write_file_bytes(be, npy_bytes(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", {0, 0, 0, 0}));
  expect_io_error([&] { read_npy(be); }, be, "big-endian");
  const std::string i4 = scratch("i4.npy");
  write_file_bytes(i4, npy_bytes(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }", {0, 0, 0, 0}));
  expect_io_error([&] { read_npy(i4); }, i4, "'<i4'");
}

TEST(Npy, RejectsUnknownVersionAndMalformedHeader) {
  const std::string v4 = scratch("v4.npy");
  write_file_bytes(v4, npy_bytes(4, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", {0, 0, 0, 0}));
  expect_io_error([&] { read_npy(v4); }, v4, "version 4.0");
  const std::string bad = scratch("bad_header.npy");
  write_file_bytes(bad, npy_bytes(1, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }", {0, 0, 0, 0}));
  expect_io_error([&] { read_npy(bad); }, bad, "malformed");
  const std::string no_shape = scratch("no_shape.npy");
  write_file_bytes(no_shape, npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, }", {0, 0, 0, 0}));
  expect_io_error([&] { read_npy(no_shape); }, no_shape, "'shape'");
}

TEST(Npy, RejectsMissingFile) {
  const std::string path = scratch("does_not_exist.npy");
  expect_io_error([&] { read_npy(path); }, path, "cannot open");
}

TEST(Npy, WriteRejectsTypesNumpyLacks) {
  const std::string path = scratch("bf16.npy");
  expect_io_error([&] { write_npy(path, patterned(DType::kBF16, {4}, 1)); }, path, "bf16");
  EXPECT_FALSE(std::filesystem::exists(path));
}

// ---------------------------------------------------------------------------------------------
// .safetensors
// ---------------------------------------------------------------------------------------------

TEST(Safetensors, RoundTripsEveryDtypeWithMetadata) {
  std::map<std::string, HostTensor> tensors;
  tensors["f32"] = patterned(DType::kF32, {3, 5}, 1);
  tensors["f16"] = patterned(DType::kF16, {7}, 2);
  tensors["bf16"] = patterned(DType::kBF16, {2, 2, 3}, 3);
  tensors["u8"] = patterned(DType::kU8, {9}, 4);  // odd size: later tensors start unaligned
  tensors["e4m3"] = patterned(DType::kE4M3, {4, 2}, 5);
  tensors["u32"] = patterned(DType::kU32, {2}, 6);
  tensors["f64"] = patterned(DType::kF64, {1, 3}, 7);
  tensors["scalar"] = patterned(DType::kF32, {}, 8);
  tensors["empty"] = patterned(DType::kF16, {0, 16}, 9);
  const std::map<std::string, std::string> metadata = {{"format", "test"}, {"note", "a \"quoted\" value"}};
  const std::string path = scratch("all.safetensors");
  write_safetensors(path, tensors, metadata);

  const SafetensorsFile back = read_safetensors(path);
  EXPECT_EQ(back.metadata, metadata);
  ASSERT_EQ(back.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    auto it = back.tensors.find(name);
    ASSERT_NE(it, back.tensors.end()) << name;
    EXPECT_EQ(it->second.dtype, t.dtype) << name;
    EXPECT_EQ(it->second.shape, t.shape) << name;
    EXPECT_EQ(it->second.bytes, t.bytes) << name;
  }
}

TEST(Safetensors, WritesAlignedHeaderAndTensorsInNameOrder) {
  std::map<std::string, HostTensor> tensors;
  tensors["b"] = patterned(DType::kU8, {3}, 1);
  tensors["a"] = patterned(DType::kU8, {5}, 2);
  tensors["c"] = patterned(DType::kF32, {2}, 3);
  const std::string path = scratch("order.safetensors");
  write_safetensors(path, tensors, {});
  const std::vector<uint8_t> file = read_file_bytes(path);
  ASSERT_GE(file.size(), 8u);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(file[static_cast<std::size_t>(i)]) << (8 * i);
  EXPECT_EQ(n % 8, 0u) << "the byte buffer must start 8-byte aligned";
  const std::string header(file.begin() + 8, file.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  EXPECT_FALSE(contains(header, "__metadata__")) << "no metadata was given";
  EXPECT_TRUE(contains(header, "\"data_offsets\":[0,5]"));  // "a" first
  EXPECT_TRUE(contains(header, "\"data_offsets\":[5,8]"));  // then "b"
  EXPECT_TRUE(contains(header, "\"data_offsets\":[8,16]")); // then "c"
  EXPECT_TRUE(contains(header, "\"dtype\":\"F32\""));
  ASSERT_EQ(file.size(), 8 + n + 16);
  const std::size_t buf = 8 + n;
  EXPECT_TRUE(std::equal(tensors["a"].bytes.begin(), tensors["a"].bytes.end(), file.begin() + static_cast<std::ptrdiff_t>(buf)));
  EXPECT_TRUE(std::equal(tensors["b"].bytes.begin(), tensors["b"].bytes.end(), file.begin() + static_cast<std::ptrdiff_t>(buf + 5)));
  EXPECT_TRUE(std::equal(tensors["c"].bytes.begin(), tensors["c"].bytes.end(), file.begin() + static_cast<std::ptrdiff_t>(buf + 8)));
  // Trailing spaces pad the JSON (allowed by the format).
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));
}

TEST(Safetensors, ReadsFilesWithUnorderedOffsetsAndTrailingSpaces) {
  // Tensors stored in the opposite order of their names, as other writers may do.
  const std::string json =
      R"({"z":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"a":{"dtype":"F16","shape":[1],"data_offsets":[2,4]}})"
      "   ";
  const std::string path = scratch("unordered.safetensors");
  write_file_bytes(path, safetensors_bytes(json, {1, 2, 3, 4}));
  const SafetensorsFile f = read_safetensors(path);
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.tensors.at("z").bytes, (std::vector<uint8_t>{1, 2}));
  EXPECT_EQ(f.tensors.at("a").bytes, (std::vector<uint8_t>{3, 4}));
  EXPECT_EQ(f.tensors.at("a").dtype, DType::kF16);
  EXPECT_TRUE(f.metadata.empty());
}

TEST(Safetensors, RejectsFileShorterThanTheLength) {
  const std::string path = scratch("tiny.safetensors");
  write_file_bytes(path, {1, 2, 3});
  expect_io_error([&] { read_safetensors(path); }, path, "not a safetensors file");
}

TEST(Safetensors, RejectsTruncatedHeader) {
  const std::string path = scratch("truncated_header.safetensors");
  std::vector<uint8_t> file = safetensors_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", {7});
  file.resize(20);
  write_file_bytes(path, file);
  expect_io_error([&] { read_safetensors(path); }, path, "truncated");
}

TEST(Safetensors, RejectsBadJson) {
  const std::string path = scratch("bad_json.safetensors");
  write_file_bytes(path, safetensors_bytes("{\"a\": [1, 2", {}));
  expect_io_error([&] { read_safetensors(path); }, path, "not valid JSON");
}

TEST(Safetensors, RejectsOffsetsOutOfRange) {
  // Truncated data: the header promises 16 bytes, the buffer holds 12.
  const std::string path = scratch("out_of_range.safetensors");
  write_file_bytes(path, safetensors_bytes(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                                           std::vector<uint8_t>(12, 0)));
  expect_io_error([&] { read_safetensors(path); }, path, "run past the end");
}

TEST(Safetensors, RejectsOffsetsThatDisagreeWithTheShape) {
  const std::string path = scratch("size.safetensors");
  write_file_bytes(path, safetensors_bytes(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}})",
                                           std::vector<uint8_t>(16, 0)));
  expect_io_error([&] { read_safetensors(path); }, path, "needs 16");
  const std::string reversed = scratch("reversed.safetensors");
  write_file_bytes(reversed, safetensors_bytes(R"({"x":{"dtype":"U8","shape":[0],"data_offsets":[8,4]}})",
                                               std::vector<uint8_t>(16, 0)));
  expect_io_error([&] { read_safetensors(reversed); }, reversed, "end before they begin");
}

TEST(Safetensors, RejectsOverlappingTensors) {
  const std::string path = scratch("overlap.safetensors");
  write_file_bytes(path, safetensors_bytes(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                                           R"("b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}})",
                                           std::vector<uint8_t>(12, 0)));
  expect_io_error([&] { read_safetensors(path); }, path, "overlap");
}

TEST(Safetensors, RejectsUnknownDtypeNamingIt) {
  const std::string path = scratch("i64.safetensors");
  write_file_bytes(path, safetensors_bytes(R"({"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})",
                                           std::vector<uint8_t>(8, 0)));
  expect_io_error([&] { read_safetensors(path); }, path, "I64");
}

TEST(Safetensors, RejectsMalformedEntriesAndMetadata) {
  const std::string no_offsets = scratch("no_offsets.safetensors");
  write_file_bytes(no_offsets, safetensors_bytes(R"({"x":{"dtype":"U8","shape":[1]}})", {0}));
  expect_io_error([&] { read_safetensors(no_offsets); }, no_offsets, "data_offsets");
  const std::string neg = scratch("negative_dim.safetensors");
  write_file_bytes(neg, safetensors_bytes(R"({"x":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", {0}));
  expect_io_error([&] { read_safetensors(neg); }, neg, "shape");
  const std::string meta = scratch("meta.safetensors");
  write_file_bytes(meta, safetensors_bytes(R"({"__metadata__":{"n":3}})", {}));
  expect_io_error([&] { read_safetensors(meta); }, meta, "__metadata__");
}

TEST(Safetensors, SelectTensorByNameOrTheOnlyOne) {
  SafetensorsFile one;
  one.tensors["only"] = patterned(DType::kF32, {2}, 1);
  EXPECT_EQ(&select_tensor(one, "", "one.safetensors"), &one.tensors["only"]);
  EXPECT_EQ(&select_tensor(one, "only", "one.safetensors"), &one.tensors["only"]);

  SafetensorsFile two;
  two.tensors["alpha"] = patterned(DType::kF32, {2}, 1);
  two.tensors["beta"] = patterned(DType::kBF16, {4, 16}, 2);
  EXPECT_EQ(&select_tensor(two, "beta", "two.safetensors"), &two.tensors["beta"]);
  for (const std::string& name : {std::string(), std::string("gamma")}) {
    const Caught c = catch_error([&] { select_tensor(two, name, "two.safetensors"); });
    ASSERT_TRUE(c.thrown) << "name '" << name << "'";
    EXPECT_EQ(c.code, ErrorCode::kIo);
    EXPECT_TRUE(contains(c.message, "two.safetensors"));
    EXPECT_TRUE(contains(c.message, "'alpha'"));
    EXPECT_TRUE(contains(c.message, "'beta'"));
    EXPECT_TRUE(contains(c.hint, "--tensor"));
  }
}

TEST(IoHostTensor, DenseStridesAndRankLimit) {
  HostTensor t = HostTensor::zeros(DType::kF16, {2, 3, 4});
  const TensorView v = t.view();
  EXPECT_EQ(v.data, t.bytes.data());
  EXPECT_EQ(v.dtype, DType::kF16);
  ASSERT_EQ(v.rank, 3);
  EXPECT_EQ(v.shape[0], 2);
  EXPECT_EQ(v.shape[2], 4);
  EXPECT_EQ(v.strides[0], 12);
  EXPECT_EQ(v.strides[1], 4);
  EXPECT_EQ(v.strides[2], 1);
  EXPECT_EQ(v.device.type, DeviceType::kCpu);
  EXPECT_EQ(t.describe(), std::string(dtype_name(DType::kF16)) + "[2, 3, 4]");
  HostTensor five = HostTensor::zeros(DType::kU8, {1, 1, 1, 1, 2});
  const Caught c = catch_error([&] { five.view(); });
  EXPECT_TRUE(c.thrown);
  EXPECT_EQ(c.code, ErrorCode::kShapeMismatch);
}

// ---------------------------------------------------------------------------------------------
// fp4kit NVFP4 files
// ---------------------------------------------------------------------------------------------

TEST(IoNvfp4File, WriteThenReadGivesTheSameTensor) {
  const int64_t rows = 40, cols = 32;
  HostTensor x = HostTensor::zeros(DType::kF32, {rows, cols});
  float* xs = reinterpret_cast<float*>(x.bytes.data());
  for (int64_t i = 0; i < rows * cols; ++i) xs[i] = static_cast<float>((i * 37) % 101 - 50) * 0.03125f;
  QuantParams params;
  params.direction = Direction::kBoth;
  params.rht = true;
  params.rht_mask = 0x1234;
  params.rounding = Rounding::kStochastic;
  params.sr_seed = 99;
  params.sr_offset = 5;
  const Nvfp4Tensor q = quantize(TensorView::matrix(xs, DType::kF32, rows, cols), params);
  const std::string path = scratch("q.safetensors");
  write_nvfp4_safetensors(path, q, {rows, cols}, {{"role", "test"}});

  const Nvfp4File f = read_nvfp4_safetensors(path);
  const Nvfp4Meta& m = f.tensor.meta();
  EXPECT_EQ(m.rows, rows);
  EXPECT_EQ(m.cols, cols);
  EXPECT_EQ(m.source_dtype, DType::kF32);
  EXPECT_EQ(m.params.direction, Direction::kBoth);
  EXPECT_EQ(m.params.block, BlockScaling::k1D);
  EXPECT_EQ(m.params.rounding, Rounding::kStochastic);
  EXPECT_TRUE(m.params.rht);
  EXPECT_FALSE(m.params.row_scaled);
  EXPECT_EQ(m.params.rht_mask, 0x1234);
  EXPECT_EQ(m.params.sr_seed, 99u);
  EXPECT_EQ(m.params.sr_offset, 5u);
  EXPECT_EQ(f.file.metadata.at("role"), "test");
  EXPECT_EQ(f.file.metadata.at("format"), kNvfp4FormatName);
  EXPECT_EQ(f.file.metadata.at("rht_mask"), "0x1234");
  for (Direction d : {Direction::kRowwise, Direction::kColumnwise}) {
    const Nvfp4Part& a = q.part(d);
    const Nvfp4Part& b = f.tensor.part(d);
    ASSERT_TRUE(b.present);
    EXPECT_EQ(host_copy(a.data).bytes, host_copy(b.data).bytes) << direction_word(d);
    EXPECT_EQ(host_copy(a.scales).bytes, host_copy(b.scales).bytes) << direction_word(d);
    EXPECT_EQ(host_copy(a.amax).bytes, host_copy(b.amax).bytes) << direction_word(d);
  }
}

TEST(IoNvfp4File, RejectsOtherSafetensorsAndMissingTensors) {
  const std::string plain = scratch("plain.safetensors");
  std::map<std::string, HostTensor> tensors;
  tensors["w"] = patterned(DType::kF32, {2}, 1);
  write_safetensors(plain, tensors, {{"format", "pt"}});
  expect_io_error([&] { read_nvfp4_safetensors(plain); }, plain, kNvfp4FormatName);

  // A real NVFP4 file with one tensor removed.
  std::vector<float> xs(16 * 16, 1.0f);
  const Nvfp4Tensor q = quantize(TensorView::matrix(xs.data(), DType::kF32, 16, 16), QuantParams{});
  const std::string full = scratch("full.safetensors");
  write_nvfp4_safetensors(full, q, {16, 16});
  SafetensorsFile f = read_safetensors(full);
  f.tensors.erase("rowwise.scales");
  const std::string partial = scratch("partial.safetensors");
  write_safetensors(partial, f.tensors, f.metadata);
  expect_io_error([&] { read_nvfp4_safetensors(partial); }, partial, "rowwise.scales");

  // Metadata that disagrees with the tensors' shapes.
  f = read_safetensors(full);
  f.metadata["cols"] = "32";
  const std::string wrong = scratch("wrong_cols.safetensors");
  write_safetensors(wrong, f.tensors, f.metadata);
  expect_io_error([&] { read_nvfp4_safetensors(wrong); }, wrong, "do not match");

  f.metadata["cols"] = "sixteen";
  const std::string bad = scratch("bad_cols.safetensors");
  write_safetensors(bad, f.tensors, f.metadata);
  expect_io_error([&] { read_nvfp4_safetensors(bad); }, bad, "\"cols\"");
}

}  // namespace
}  // namespace fp4kit::cli

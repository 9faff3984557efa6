// tools/cli/io_npy.cpp: the NumPy .npy format, plus HostTensor and the whole-file helpers that
// both formats use.
//
// Format (numpy.lib.format): magic "\x93NUMPY", major and minor version bytes, the header length
// (uint16 little-endian for 1.0, uint32 for 2.0 and 3.0), then the header: a Python dict literal
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with spaces and ended by '\n'
// so that the data starts at a multiple of 64 bytes. 3.0 only allows UTF-8 in the header, which
// changes nothing for the dicts NumPy writes. The data follows in C (row-major) order.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>

#include "fp4kit/error.hpp"
#include "io.hpp"

namespace fp4kit::cli {

namespace {

constexpr char kNpyMagic[] = "\x93NUMPY";
constexpr std::size_t kNpyMagicLen = 6;
constexpr std::size_t kNpyAlign = 64;
// Largest element count we accept: keeps numel * element size far from int64 overflow.
constexpr int64_t kMaxNumel = int64_t{1} << 48;

[[noreturn]] void fail(const std::string& path, const std::string& problem, const std::string& hint) {
  throw Error(ErrorCode::kIo, "'" + path + "': " + problem, hint);
}

// NumPy descr strings we read, and the one we write for each dtype.
struct NpyType {
  const char* descr;
  DType dtype;
  bool write;  // the spelling write_npy uses
};
constexpr NpyType kNpyTypes[] = {
    {"<f4", DType::kF32, true}, {"<f2", DType::kF16, true}, {"|u1", DType::kU8, true},
    {"<u1", DType::kU8, false}, {"<u4", DType::kU32, true},
};

// A minimal reader of the header dict: string keys; values are strings, True/False, or tuples of
// integers. That is all NumPy writes.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  struct Value {
    enum Kind { kString, kBool, kTuple } kind = kString;
    std::string str;
    bool boolean = false;
    std::vector<int64_t> tuple;
  };

  std::map<std::string, Value> parse() {
    std::map<std::string, Value> dict;
    skip_space();
    expect('{');
    for (;;) {
      skip_space();
      if (peek() == '}') break;
      std::string key = parse_string();
      skip_space();
      expect(':');
      skip_space();
      dict[key] = parse_value();
      skip_space();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      skip_space();
      if (peek() != '}') bad("expected ',' or '}'");
    }
    return dict;
  }

 private:
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  void expect(char c) {
    if (peek() != c) bad(std::string("expected '") + c + "'");
    ++i_;
  }
  [[noreturn]] void bad(const std::string& what) const {
    fail(path_, "malformed .npy header (" + what + " at character " + std::to_string(i_) + " of \"" + s_ + "\")",
         "the file is damaged or not written by numpy.save; re-save it with numpy.save");
  }
  std::string parse_string() {
    const char quote = peek();
    if (quote != '\'' && quote != '"') bad("expected a quoted string");
    ++i_;
    const std::size_t start = i_;
    while (i_ < s_.size() && s_[i_] != quote) ++i_;
    if (i_ >= s_.size()) bad("unterminated string");
    std::string out = s_.substr(start, i_ - start);
    ++i_;
    return out;
  }
  int64_t parse_int() {
    const std::size_t start = i_;
    int64_t v = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      if (v > (std::numeric_limits<int64_t>::max() - 9) / 10) bad("dimension too large");
      v = v * 10 + (s_[i_] - '0');
      ++i_;
    }
    if (i_ == start) bad("expected a non-negative integer");
    if (peek() == 'L') ++i_;  // Python 2 long suffix
    return v;
  }
  Value parse_value() {
    Value v;
    const char c = peek();
    if (c == '\'' || c == '"') {
      v.kind = Value::kString;
      v.str = parse_string();
    } else if (s_.compare(i_, 4, "True") == 0) {
      v.kind = Value::kBool;
      v.boolean = true;
      i_ += 4;
    } else if (s_.compare(i_, 5, "False") == 0) {
      v.kind = Value::kBool;
      v.boolean = false;
      i_ += 5;
    } else if (c == '(') {
      v.kind = Value::kTuple;
      ++i_;
      for (;;) {
        skip_space();
        if (peek() == ')') break;
        v.tuple.push_back(parse_int());
        skip_space();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        if (peek() != ')') bad("expected ',' or ')' in the shape");
      }
      ++i_;
    } else {
      bad("unsupported value");
    }
    return v;
  }

  const std::string& s_;
  const std::string& path_;
  std::size_t i_ = 0;
};

int64_t checked_numel(const std::vector<int64_t>& shape, const std::string& path) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail(path, "negative dimension " + std::to_string(d), "the file is damaged; re-save it");
    if (d != 0 && n > kMaxNumel / d) {
      fail(path, "shape has more than 2^48 elements", "the file is damaged, or too large for fp4kit");
    }
    n *= d;
  }
  return n;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

// --- HostTensor -----------------------------------------------------------------------------------

HostTensor HostTensor::zeros(DType dtype, std::vector<int64_t> shape) {
  HostTensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.bytes.assign(static_cast<std::size_t>(t.numel()) * dtype_size(dtype), 0);
  return t;
}

int64_t HostTensor::numel() const noexcept {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

TensorView HostTensor::view() {
  if (shape.size() > static_cast<std::size_t>(kMaxRank)) {
    throw Error(ErrorCode::kShapeMismatch,
                "tensor " + describe() + " has rank " + std::to_string(shape.size()) + "; views hold at most " +
                    std::to_string(kMaxRank) + " dimensions",
                "reshape it to at most 4 dimensions");
  }
  TensorView v;
  v.data = bytes.data();
  v.dtype = dtype;
  v.rank = static_cast<int>(shape.size());
  int64_t stride = 1;
  for (int i = v.rank - 1; i >= 0; --i) {
    v.shape[i] = shape[static_cast<std::size_t>(i)];
    v.strides[i] = stride;
    stride *= shape[static_cast<std::size_t>(i)];
  }
  v.device = Device{};
  return v;
}

std::string HostTensor::describe() const { return std::string(dtype_name(dtype)) + shape_string(shape); }

// --- Whole files ----------------------------------------------------------------------------------

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    const int err = errno;
    fail(path, std::string("cannot open: ") + std::strerror(err), "check the path and its permissions");
  }
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  std::size_t n;
  while ((n = std::fread(chunk, 1, sizeof(chunk), f)) > 0) bytes.insert(bytes.end(), chunk, chunk + n);
  const bool error = std::ferror(f) != 0;
  std::fclose(f);
  if (error) fail(path, "read error", "check the file system");
  return bytes;
}

void write_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    const int err = errno;
    fail(path, std::string("cannot create: ") + std::strerror(err),
         "check that the directory exists and is writable");
  }
  const std::size_t written = bytes.empty() ? 0 : std::fwrite(bytes.data(), 1, bytes.size(), f);
  const bool ok = written == bytes.size() && std::fclose(f) == 0;
  if (!ok) fail(path, "write failed (disk full?)", "free some space or choose another location");
}

// --- .npy -----------------------------------------------------------------------------------------

HostTensor read_npy(const std::string& path) {
  const std::vector<uint8_t> file = read_file_bytes(path);
  if (file.size() < kNpyMagicLen + 2 || std::memcmp(file.data(), kNpyMagic, kNpyMagicLen) != 0) {
    fail(path, "not a .npy file (bad magic: the file must start with \\x93NUMPY)",
         "write .npy files with numpy.save, or pass a .safetensors file");
  }
  const int major = file[6];
  const int minor = file[7];
  std::size_t header_len = 0;
  std::size_t header_start = 0;
  if (major == 1 && minor == 0) {
    if (file.size() < 10) fail(path, "truncated in the header length", "the file is incomplete; re-save it");
    header_len = static_cast<std::size_t>(file[8]) | (static_cast<std::size_t>(file[9]) << 8);
    header_start = 10;
  } else if ((major == 2 || major == 3) && minor == 0) {
    if (file.size() < 12) fail(path, "truncated in the header length", "the file is incomplete; re-save it");
    header_len = 0;
    for (int i = 0; i < 4; ++i) header_len |= static_cast<std::size_t>(file[8 + i]) << (8 * i);
    header_start = 12;
  } else {
    fail(path, "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor),
         "fp4kit reads versions 1.0, 2.0 and 3.0; re-save the array with numpy.save");
  }
  if (file.size() - header_start < header_len) {
    fail(path,
         "truncated: the header claims " + std::to_string(header_len) + " bytes but only " +
             std::to_string(file.size() - header_start) + " follow",
         "the file is incomplete; re-save it");
  }
  const std::string header(reinterpret_cast<const char*>(file.data() + header_start), header_len);
  const auto dict = HeaderParser(header, path).parse();

  auto get = [&](const char* key, HeaderParser::Value::Kind kind) -> const HeaderParser::Value& {
    auto it = dict.find(key);
    if (it == dict.end() || it->second.kind != kind) {
      fail(path, std::string("malformed .npy header: no valid '") + key + "' entry in \"" + header + "\"",
           "the file is damaged or not written by numpy.save; re-save it with numpy.save");
    }
    return it->second;
  };
  const std::string descr = get("descr", HeaderParser::Value::kString).str;
  const bool fortran_order = get("fortran_order", HeaderParser::Value::kBool).boolean;
  const std::vector<int64_t> shape = get("shape", HeaderParser::Value::kTuple).tuple;

  const NpyType* type = nullptr;
  for (const NpyType& t : kNpyTypes) {
    if (descr == t.descr) type = &t;
  }
  if (type == nullptr) {
    if (descr == "<f8") {
      fail(path, "holds float64 ('<f8') data; fp4kit takes float32, float16 or bfloat16 inputs",
           "convert it to float32 first, e.g. numpy.save(path, x.astype(numpy.float32))");
    }
    if (!descr.empty() && descr[0] == '>') {
      fail(path, "holds big-endian data ('" + descr + "'); fp4kit reads little-endian files only",
           "convert it with x.astype(x.dtype.newbyteorder('<')) before numpy.save");
    }
    fail(path, "has element type '" + descr + "', which fp4kit does not read",
         "fp4kit reads '<f4' (float32), '<f2' (float16), '|u1' (uint8) and '<u4' (uint32); convert with "
         "x.astype(numpy.float32)");
  }
  if (fortran_order) {
    fail(path, "is stored in Fortran (column-major) order; fp4kit reads C-order arrays only",
         "save a C-order copy: numpy.save(path, numpy.ascontiguousarray(x))");
  }
  const int64_t numel = checked_numel(shape, path);
  const std::size_t data_start = header_start + header_len;
  const std::size_t nbytes = static_cast<std::size_t>(numel) * dtype_size(type->dtype);
  if (file.size() - data_start < nbytes) {
    fail(path,
         "truncated: shape " + shape_string(shape) + " of '" + descr + "' needs " + std::to_string(nbytes) +
             " data bytes but only " + std::to_string(file.size() - data_start) + " follow the header",
         "the file is incomplete (an interrupted copy or save?); re-save it");
  }
  HostTensor t;
  t.dtype = type->dtype;
  t.shape = shape;
  t.bytes.assign(file.begin() + static_cast<std::ptrdiff_t>(data_start),
                 file.begin() + static_cast<std::ptrdiff_t>(data_start + nbytes));
  return t;
}

void write_npy(const std::string& path, const HostTensor& tensor) {
  const NpyType* type = nullptr;
  for (const NpyType& t : kNpyTypes) {
    if (t.write && t.dtype == tensor.dtype) type = &t;
  }
  if (type == nullptr) {
    fail(path, std::string("cannot write ") + dtype_name(tensor.dtype) + " data as .npy (NumPy has no such type)",
         "write f32, f16, u8 or u32 tensors to .npy, or use .safetensors");
  }
  const std::size_t nbytes = static_cast<std::size_t>(tensor.numel()) * dtype_size(tensor.dtype);
  if (tensor.bytes.size() != nbytes) {
    throw Error(ErrorCode::kInternal,
                "write_npy('" + path + "'): " + tensor.describe() + " needs " + std::to_string(nbytes) +
                    " bytes but holds " + std::to_string(tensor.bytes.size()),
                "this is a bug in fp4kit; please report it");
  }
  std::ostringstream dict;
  dict << "{'descr': '" << type->descr << "', 'fortran_order': False, 'shape': (";
  for (std::size_t i = 0; i < tensor.shape.size(); ++i) dict << (i ? ", " : "") << tensor.shape[i];
  if (tensor.shape.size() == 1) dict << ",";  // a Python 1-tuple
  dict << "), }";
  std::string header = dict.str();

  // Version 1.0 has a 16-bit header length; fall back to 2.0 for (absurdly) long shapes.
  const bool v1 = kNpyMagicLen + 2 + 2 + header.size() + 1 <= 65535;
  const std::size_t prefix = kNpyMagicLen + 2 + (v1 ? 2 : 4);
  // Pad with spaces so that the data starts at a multiple of 64; the header ends with '\n'.
  const std::size_t total = (prefix + header.size() + 1 + kNpyAlign - 1) / kNpyAlign * kNpyAlign;
  header.append(total - prefix - header.size() - 1, ' ');
  header.push_back('\n');

  // Sized once and filled in place (growing inserts trip a GCC 12 -Wstringop-overflow false positive).
  std::vector<uint8_t> out(total + nbytes);
  std::memcpy(out.data(), kNpyMagic, kNpyMagicLen);
  out[kNpyMagicLen] = v1 ? 1 : 2;
  out[kNpyMagicLen + 1] = 0;
  const std::size_t len = header.size();
  for (std::size_t i = 0; i < prefix - kNpyMagicLen - 2; ++i) {
    out[kNpyMagicLen + 2 + i] = static_cast<uint8_t>((len >> (8 * i)) & 0xFFu);
  }
  std::memcpy(out.data() + prefix, header.data(), header.size());
  if (nbytes > 0) std::memcpy(out.data() + total, tensor.bytes.data(), nbytes);
  write_file_bytes(path, out);
}

}  // namespace fp4kit::cli

// tools/cli/io_safetensors.cpp: the safetensors format.
//
// Layout: N (uint64 little-endian), then N bytes of UTF-8 JSON, then the byte buffer. The JSON
// object maps each tensor name to {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
// with offsets relative to the start of the byte buffer, plus an optional "__metadata__" object of
// string values. Writers may pad the JSON with trailing spaces; we pad it to a multiple of 8 so
// that the buffer (and every tensor, placed in name order) starts 8-byte aligned.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "fp4kit/error.hpp"
#include "fp4kit/ops.hpp"
#include "io.hpp"

namespace fp4kit::cli {

namespace {

// The safetensors reference implementation refuses headers above 100 MB; so do we, so that a
// corrupt length cannot make us allocate gigabytes.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr int64_t kMaxNumel = int64_t{1} << 48;

[[noreturn]] void fail(const std::string& path, const std::string& problem, const std::string& hint) {
  throw Error(ErrorCode::kIo, "'" + path + "': " + problem, hint);
}

struct StType {
  const char* name;
  DType dtype;
};
constexpr StType kStTypes[] = {
    {"F32", DType::kF32}, {"F16", DType::kF16},         {"BF16", DType::kBF16}, {"U8", DType::kU8},
    {"F8_E4M3", DType::kE4M3}, {"U32", DType::kU32}, {"F64", DType::kF64},
};

std::string type_list() {
  std::string s;
  for (const StType& t : kStTypes) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s;
}

std::string name_list(const SafetensorsFile& file) {
  if (file.tensors.empty()) return "(none)";
  std::string s;
  for (const auto& [name, t] : file.tensors) s += (s.empty() ? "" : ", ") + ("'" + name + "' " + t.describe());
  return s;
}

const char* kDamagedHint = "the file is damaged or was not written by a safetensors writer; re-create it";

// One header entry, validated but not yet loaded.
struct Entry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin;
  uint64_t end;
};

Entry parse_entry(const std::string& path, const std::string& name, const nlohmann::json& j) {
  const std::string where = "tensor '" + name + "'";
  if (!j.is_object()) fail(path, where + ": header entry is not a JSON object", kDamagedHint);
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!j.contains(key)) fail(path, where + ": header entry has no \"" + key + "\"", kDamagedHint);
  }
  Entry e;
  e.name = name;
  if (!j["dtype"].is_string()) fail(path, where + ": \"dtype\" is not a string", kDamagedHint);
  const std::string dtype = j["dtype"].get<std::string>();
  if (!parse_safetensors_dtype(dtype, e.dtype)) {
    fail(path, where + " has dtype " + dtype + ", which fp4kit does not read",
         "fp4kit reads " + type_list() + "; convert the tensor to F32, F16 or BF16");
  }
  const nlohmann::json& shape = j["shape"];
  if (!shape.is_array()) fail(path, where + ": \"shape\" is not an array", kDamagedHint);
  int64_t numel = 1;
  for (const nlohmann::json& d : shape) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) {
      fail(path, where + ": \"shape\" " + shape.dump() + " holds a value that is not a non-negative integer",
           kDamagedHint);
    }
    const int64_t v = d.get<int64_t>();
    if (v != 0 && numel > kMaxNumel / v) fail(path, where + ": shape " + shape.dump() + " is too large", kDamagedHint);
    numel *= v;
    e.shape.push_back(v);
  }
  const nlohmann::json& off = j["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
    fail(path, where + ": \"data_offsets\" " + off.dump() + " is not a pair of non-negative integers",
         kDamagedHint);
  }
  e.begin = off[0].get<uint64_t>();
  e.end = off[1].get<uint64_t>();
  if (e.end < e.begin) {
    fail(path, where + ": data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                   "] end before they begin",
         kDamagedHint);
  }
  const uint64_t expected = static_cast<uint64_t>(numel) * dtype_size(e.dtype);
  if (e.end - e.begin != expected) {
    fail(path,
         where + ": data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "] span " +
             std::to_string(e.end - e.begin) + " bytes but " + dtype + " " + shape.dump() + " needs " +
             std::to_string(expected),
         kDamagedHint);
  }
  return e;
}

}  // namespace

const char* safetensors_dtype_name(DType dtype) noexcept {
  for (const StType& t : kStTypes) {
    if (t.dtype == dtype) return t.name;
  }
  return "?";
}

bool parse_safetensors_dtype(const std::string& name, DType& dtype) noexcept {
  for (const StType& t : kStTypes) {
    if (name == t.name) {
      dtype = t.dtype;
      return true;
    }
  }
  return false;
}

SafetensorsFile read_safetensors(const std::string& path) {
  const std::vector<uint8_t> file = read_file_bytes(path);
  if (file.size() < 8) {
    fail(path, "not a safetensors file (" + std::to_string(file.size()) + " bytes: shorter than the 8-byte header length)",
         kDamagedHint);
  }
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<uint64_t>(file[static_cast<std::size_t>(i)]) << (8 * i);
  if (header_len > kMaxHeaderBytes) {
    fail(path, "not a safetensors file (header length " + std::to_string(header_len) + " exceeds 100 MB)",
         kDamagedHint);
  }
  if (header_len > file.size() - 8) {
    fail(path,
         "truncated: the header length says " + std::to_string(header_len) + " bytes but only " +
             std::to_string(file.size() - 8) + " follow",
         "the file is incomplete (an interrupted copy or save?); re-create it");
  }
  const char* header_begin = reinterpret_cast<const char*>(file.data() + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_begin + header_len);
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("not a safetensors file (the header is not valid JSON: ") + e.what() + ")", kDamagedHint);
  }
  if (!header.is_object()) fail(path, "not a safetensors file (the header is not a JSON object)", kDamagedHint);

  SafetensorsFile out;
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) fail(path, "\"__metadata__\" is not a JSON object", kDamagedHint);
      for (const auto& [mkey, mvalue] : value.items()) {
        if (!mvalue.is_string()) {
          fail(path, "\"__metadata__\" value of '" + mkey + "' is not a string (" + mvalue.dump() + ")",
               kDamagedHint);
        }
        out.metadata[mkey] = mvalue.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, key, value));
  }

  // Every tensor inside the byte buffer, and no two overlapping (checked in offset order).
  const uint64_t buffer_len = file.size() - 8 - header_len;
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    if (e.end > buffer_len) {
      fail(path,
           "tensor '" + e.name + "': data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
               "] run past the end of the " + std::to_string(buffer_len) + "-byte data buffer",
           "the file is truncated or its header is damaged; re-create it");
    }
    if (i > 0 && e.begin < entries[i - 1].end) {
      const Entry& p = entries[i - 1];
      fail(path,
           "tensors '" + p.name + "' [" + std::to_string(p.begin) + ", " + std::to_string(p.end) + ") and '" +
               e.name + "' [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + ") overlap",
           kDamagedHint);
    }
  }
  const uint8_t* buffer = file.data() + 8 + header_len;
  for (const Entry& e : entries) {
    HostTensor t;
    t.dtype = e.dtype;
    t.shape = e.shape;
    t.bytes.assign(buffer + e.begin, buffer + e.end);
    out.tensors.emplace(e.name, std::move(t));
  }
  return out;
}

void write_safetensors(const std::string& path, const std::map<std::string, HostTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {  // std::map: name order
    if (name == "__metadata__") {
      throw Error(ErrorCode::kInvalidArgument, "'" + path + "': a tensor may not be called __metadata__",
                  "rename the tensor");
    }
    const std::size_t nbytes = static_cast<std::size_t>(t.numel()) * dtype_size(t.dtype);
    if (t.bytes.size() != nbytes) {
      throw Error(ErrorCode::kInternal,
                  "write_safetensors('" + path + "'): tensor '" + name + "' " + t.describe() + " needs " +
                      std::to_string(nbytes) + " bytes but holds " + std::to_string(t.bytes.size()),
                  "this is a bug in fp4kit; please report it");
    }
    DType check;
    if (!parse_safetensors_dtype(safetensors_dtype_name(t.dtype), check)) {
      throw Error(ErrorCode::kIo, "'" + path + "': cannot write tensor '" + name + "' of dtype " + dtype_name(t.dtype),
                  "safetensors output takes " + type_list());
    }
    header[name] = {{"dtype", safetensors_dtype_name(t.dtype)},
                    {"shape", t.shape},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // the buffer starts at 8 + json.size(): 8-aligned

  std::vector<uint8_t> out;
  out.reserve(8 + json.size() + offset);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>((static_cast<uint64_t>(json.size()) >> (8 * i)) & 0xFFu));
  out.insert(out.end(), json.begin(), json.end());
  for (const auto& [name, t] : tensors) out.insert(out.end(), t.bytes.begin(), t.bytes.end());
  write_file_bytes(path, out);
}

HostTensor& select_tensor(SafetensorsFile& file, const std::string& name, const std::string& path) {
  if (name.empty()) {
    if (file.tensors.size() == 1) return file.tensors.begin()->second;
    if (file.tensors.empty()) fail(path, "holds no tensors", "pass a file that holds the tensor to process");
    fail(path, "holds " + std::to_string(file.tensors.size()) + " tensors: " + name_list(file),
         "choose one with --tensor NAME");
  }
  auto it = file.tensors.find(name);
  if (it == file.tensors.end()) {
    fail(path, "has no tensor '" + name + "'; it holds " + name_list(file), "pass one of those names to --tensor");
  }
  return it->second;
}

// --- fp4kit NVFP4 files ---------------------------------------------------------------------------

namespace {

struct DirectionWord {
  const char* word;
  Direction direction;
};
constexpr DirectionWord kDirectionWords[] = {
    {"rowwise", Direction::kRowwise}, {"columnwise", Direction::kColumnwise}, {"both", Direction::kBoth}};

// The source types quantize takes, spelled as dtype_name() spells them in the metadata.
constexpr DType kSourceTypes[] = {DType::kF32, DType::kF16, DType::kBF16};

const char* kNotNvfp4Hint = "pass a file written by `fp4kit quantize` (run `fp4kit quantize --help`)";

std::string hex16(uint16_t v) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "0x%04x", static_cast<unsigned>(v));
  return buf;
}

// Metadata readers: each names the file and key when the value is missing or malformed.
class MetaReader {
 public:
  MetaReader(const std::map<std::string, std::string>& meta, const std::string& path) : meta_(meta), path_(path) {}

  const std::string& str(const char* key) const {
    auto it = meta_.find(key);
    if (it == meta_.end()) fail(path_, std::string("metadata has no \"") + key + "\" entry", kNotNvfp4Hint);
    return it->second;
  }
  [[noreturn]] void bad(const char* key, const std::string& expected) const {
    fail(path_, std::string("metadata \"") + key + "\" is \"" + str(key) + "\"; expected " + expected,
         kNotNvfp4Hint);
  }
  uint64_t u64(const char* key, int base = 10) const {
    std::string s = str(key);
    if (base == 16 && (s.rfind("0x", 0) == 0 || s.rfind("0X", 0) == 0)) s = s.substr(2);
    uint64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
      bad(key, base == 16 ? "a hexadecimal integer" : "a non-negative decimal integer");
    }
    return v;
  }
  bool boolean(const char* key) const {
    const std::string& s = str(key);
    if (s == "true") return true;
    if (s == "false") return false;
    bad(key, "true or false");
  }
  // One of two words: returns whether it is the second.
  bool choice(const char* key, const char* first, const char* second) const {
    const std::string& s = str(key);
    if (s == first) return false;
    if (s == second) return true;
    bad(key, std::string(first) + " or " + second);
  }

 private:
  const std::map<std::string, std::string>& meta_;
  const std::string& path_;
};

}  // namespace

const char* direction_word(Direction d) noexcept {
  for (const DirectionWord& w : kDirectionWords) {
    if (w.direction == d) return w.word;
  }
  return "?";
}

bool parse_direction_word(const std::string& word, Direction& d) noexcept {
  for (const DirectionWord& w : kDirectionWords) {
    if (word == w.word) {
      d = w.direction;
      return true;
    }
  }
  return false;
}

HostTensor host_copy(const TensorView& view) {
  if (view.device.type != DeviceType::kCpu) {
    throw Error(ErrorCode::kInvalidArgument, "cannot copy " + view.describe() + " to a host tensor: it is not on the CPU",
                "quantize on the CPU target, or copy the tensor to host memory first");
  }
  if (view.rank < 1 || view.rank > 2 || view.strides[view.rank - 1] != 1) {
    throw Error(ErrorCode::kLayout, "cannot copy " + view.describe() + ": expected rank 1 or 2 with a contiguous last dimension",
                "pass a dense vector or row-major matrix");
  }
  const int64_t rows = view.rank == 2 ? view.shape[0] : 1;
  const int64_t cols = view.shape[view.rank - 1];
  const int64_t row_stride = view.rank == 2 ? view.strides[0] : cols;
  HostTensor t = HostTensor::zeros(view.dtype, std::vector<int64_t>(view.shape, view.shape + view.rank));
  const std::size_t esize = dtype_size(view.dtype);
  const std::size_t row_bytes = static_cast<std::size_t>(cols) * esize;
  for (int64_t r = 0; r < rows; ++r) {
    if (row_bytes == 0) break;
    std::memcpy(t.bytes.data() + static_cast<std::size_t>(r) * row_bytes,
                static_cast<const uint8_t*>(view.data) + static_cast<std::size_t>(r * row_stride) * esize, row_bytes);
  }
  return t;
}

void write_nvfp4_safetensors(const std::string& path, const Nvfp4Tensor& q, const std::vector<int64_t>& source_shape,
                             const std::map<std::string, std::string>& extra_metadata) {
  std::map<std::string, HostTensor> tensors;
  for (Direction d : {Direction::kRowwise, Direction::kColumnwise}) {
    const Nvfp4Part& part = d == Direction::kRowwise ? q.rowwise() : q.columnwise();
    if (!part.present) continue;
    const std::string prefix = direction_word(d);
    tensors[prefix + ".data"] = host_copy(part.data);
    tensors[prefix + ".scales"] = host_copy(part.scales);
    tensors[prefix + ".amax"] = host_copy(part.amax);
    if (part.scales_swizzled.data) tensors[prefix + ".scales_swizzled"] = host_copy(part.scales_swizzled);
  }
  tensors["nonfinite_counts"] = host_copy(q.nonfinite_counts());

  const Nvfp4Meta& m = q.meta();
  const QuantParams& p = m.params;
  std::map<std::string, std::string> meta = extra_metadata;
  meta["format"] = kNvfp4FormatName;
  meta["fp4kit_version"] = fp4kit::version();
  meta["rows"] = std::to_string(m.rows);
  meta["cols"] = std::to_string(m.cols);
  meta["source_dtype"] = dtype_name(m.source_dtype);
  meta["source_shape"] = nlohmann::json(source_shape).dump();
  meta["direction"] = direction_word(p.direction);
  meta["block"] = p.block == BlockScaling::k2D ? "2d" : "1d";
  meta["rounding"] = p.rounding == Rounding::kStochastic ? "sr" : "rne";
  meta["row_scaled"] = p.row_scaled ? "true" : "false";
  meta["rht"] = p.rht ? "true" : "false";
  meta["rht_mask"] = hex16(p.rht_mask);
  meta["sr_seed"] = std::to_string(p.sr_seed);
  meta["sr_offset"] = std::to_string(p.sr_offset);
  meta["swizzled_scales"] = p.swizzled_scales ? "true" : "false";
  meta["packing"] = "e2m1 x2 per byte, element 2i in the low nibble";
  write_safetensors(path, tensors, meta);
}

Nvfp4File read_nvfp4_safetensors(const std::string& path) {
  Nvfp4File out;
  out.file = read_safetensors(path);
  auto format = out.file.metadata.find("format");
  if (format == out.file.metadata.end() || format->second != kNvfp4FormatName) {
    fail(path,
         "is not an fp4kit NVFP4 file (metadata \"format\" is " +
             (format == out.file.metadata.end() ? std::string("missing") : "\"" + format->second + "\"") +
             ", expected \"" + kNvfp4FormatName + "\")",
         kNotNvfp4Hint);
  }
  const MetaReader r(out.file.metadata, path);
  Nvfp4Meta meta;
  const uint64_t rows = r.u64("rows");
  const uint64_t cols = r.u64("cols");
  if (rows > (uint64_t{1} << 40) || cols > (uint64_t{1} << 40)) r.bad("rows", "a plausible tensor size");
  meta.rows = static_cast<int64_t>(rows);
  meta.cols = static_cast<int64_t>(cols);
  bool source_ok = false;
  for (DType t : kSourceTypes) {
    if (r.str("source_dtype") == dtype_name(t)) {
      meta.source_dtype = t;
      source_ok = true;
    }
  }
  if (!source_ok) {
    r.bad("source_dtype", std::string(dtype_name(DType::kF32)) + ", " + dtype_name(DType::kF16) + " or " +
                              dtype_name(DType::kBF16));
  }
  QuantParams& p = meta.params;
  if (!parse_direction_word(r.str("direction"), p.direction)) r.bad("direction", "rowwise, columnwise or both");
  p.block = r.choice("block", "1d", "2d") ? BlockScaling::k2D : BlockScaling::k1D;
  p.rounding = r.choice("rounding", "rne", "sr") ? Rounding::kStochastic : Rounding::kNearest;
  p.row_scaled = r.boolean("row_scaled");
  p.rht = r.boolean("rht");
  const uint64_t mask = r.u64("rht_mask", 16);
  if (mask > 0xFFFFu) r.bad("rht_mask", "a 16-bit mask");
  p.rht_mask = static_cast<uint16_t>(mask);
  p.sr_seed = r.u64("sr_seed");
  p.sr_offset = r.u64("sr_offset");
  // Files written before the swizzled copy existed have no entry: no swizzled scales.
  p.swizzled_scales = out.file.metadata.count("swizzled_scales") != 0 && r.boolean("swizzled_scales");

  auto tensor = [&](const std::string& name) -> HostTensor& {
    auto it = out.file.tensors.find(name);
    if (it == out.file.tensors.end()) {
      fail(path, "has no tensor '" + name + "', which its metadata (direction " + direction_word(p.direction) +
                     ") requires",
           kNotNvfp4Hint);
    }
    return it->second;
  };
  Nvfp4Part parts[2];
  for (Direction d : {Direction::kRowwise, Direction::kColumnwise}) {
    const bool want = d == Direction::kRowwise ? has_rowwise(p.direction) : has_columnwise(p.direction);
    if (!want) continue;
    Nvfp4Part& part = parts[d == Direction::kRowwise ? 0 : 1];
    const std::string prefix = direction_word(d);
    part.data = tensor(prefix + ".data").view();
    part.scales = tensor(prefix + ".scales").view();
    part.amax = tensor(prefix + ".amax").view();
    if (p.swizzled_scales) part.scales_swizzled = tensor(prefix + ".scales_swizzled").view();
    part.geometry = d == Direction::kRowwise ? Nvfp4Tensor::rowwise_geometry(meta.rows, meta.cols)
                                             : Nvfp4Tensor::columnwise_geometry(meta.rows, meta.cols);
    part.present = true;
  }
  const TensorView counts = tensor("nonfinite_counts").view();
  try {
    out.tensor = Nvfp4Tensor::from_parts(meta, parts[0], parts[1], counts);
  } catch (const Error& e) {
    fail(path, "its tensors do not match its metadata: " + e.message(), kNotNvfp4Hint);
  }
  return out;
}

}  // namespace fp4kit::cli

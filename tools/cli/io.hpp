// tools/cli/io.hpp: tensor files for the command line, read into and written from host memory.
//
//   .npy          NumPy format versions 1.0, 2.0 and 3.0 (read), 1.0 or 2.0 (written); little-endian,
//                 C order only. Element types '<f4', '<f2', '|u1' ('<u1' read too) and '<u4'.
//   .safetensors  8-byte little-endian header length, a JSON header (string "__metadata__" map and
//                 one entry per tensor: dtype, shape, data_offsets into the byte buffer), the bytes.
//                 Element types F32, F16, BF16, U8, F8_E4M3, U32, and F64 (read, so that a command
//                 can reject it with a hint instead of a parse error).
//
// Every problem (missing file, bad magic, truncated data, offsets out of range, an element type or
// layout fp4kit does not take) throws fp4kit::Error(ErrorCode::kIo) whose message names the file
// and the problem and whose hint names the fix. Nothing here touches a GPU: fp4kit's front ends
// meet NumPy and the safetensors ecosystem only through these files.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "fp4kit/tensor.hpp"
#include "fp4kit/types.hpp"

namespace fp4kit::cli {

// A dense, row-major (C order) tensor owned by host memory.
struct HostTensor {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // empty: a scalar (one element)
  std::vector<uint8_t> bytes;  // numel() * dtype_size(dtype) bytes

  // A zero-filled tensor of this type and shape.
  static HostTensor zeros(DType dtype, std::vector<int64_t> shape);

  int64_t numel() const noexcept;  // product of the shape (1 for a scalar)
  // A CPU view: rank = shape.size() (at most kMaxRank, else Error kShapeMismatch), dense strides.
  // NOTE: the view points into `bytes`; it dangles once the vector reallocates or the tensor dies.
  TensorView view();
  // "f32[4, 16]", for messages and summaries.
  std::string describe() const;
};

// --- NumPy .npy -----------------------------------------------------------------------------------
HostTensor read_npy(const std::string& path);
// Writes format 1.0 (2.0 when the header does not fit 1.0's 16-bit length). Types F32, F16, U8, U32;
// others throw Error(kIo) (NumPy has no bfloat16 or float8_e4m3fn type).
void write_npy(const std::string& path, const HostTensor& tensor);

// --- safetensors ----------------------------------------------------------------------------------
struct SafetensorsFile {
  std::map<std::string, std::string> metadata;  // "__metadata__"
  std::map<std::string, HostTensor> tensors;    // by name
};

// Reads the header and every tensor; validates the header length, the JSON, each entry's dtype and
// shape, and the data offsets (in range, size = numel * element size, no two tensors overlapping).
SafetensorsFile read_safetensors(const std::string& path);
// Writes the tensors in name order, the JSON header padded with spaces to a multiple of 8 bytes so
// that the byte buffer starts 8-byte aligned. Metadata is written only when non-empty.
void write_safetensors(const std::string& path, const std::map<std::string, HostTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The tensor called `name` in `file` (read from `path`, named in messages). An empty name selects
// the only tensor of a one-tensor file. Errors (kIo) list the names the file does hold.
HostTensor& select_tensor(SafetensorsFile& file, const std::string& name, const std::string& path);

// The safetensors spelling of a dtype ("F32", "F8_E4M3", ...), and back (false if not one we read).
const char* safetensors_dtype_name(DType dtype) noexcept;
bool parse_safetensors_dtype(const std::string& name, DType& dtype) noexcept;

// --- fp4kit NVFP4 files (what `fp4kit quantize` writes) ----------------------------------------------
// A safetensors file with, per present direction D in {rowwise, columnwise}:
//   "D.data"   U8      [rows, ceil(cols/16)*8]  E2M1 pairs, element 2i in the low nibble
//   "D.scales" F8_E4M3 [rows, ceil(cols/16)]    compact layout, row-major
//   "D.amax"   F32     [1], or [rows] when row-scaled
// (rows x cols in D's orientation: the columnwise direction of x[R, C] is [C, R]), plus
//   "nonfinite_counts" U32 [2] = {NaN count, Inf count} of the source,
// and metadata saying how it was made: "format" = kNvfp4FormatName, "fp4kit_version", "rows", "cols",
// "source_dtype", "source_shape" (JSON array), "direction" (rowwise|columnwise|both), "block" (1d|2d),
// "rounding" (rne|sr), "row_scaled" and "rht" (true|false), "rht_mask" (hex), "sr_seed", "sr_offset"
// (decimal) and "packing" (in words).
inline constexpr char kNvfp4FormatName[] = "fp4kit.nvfp4";

// The CLI spelling of a direction ("rowwise", "columnwise", "both"), and back (false if none).
const char* direction_word(Direction d) noexcept;
bool parse_direction_word(const std::string& word, Direction& d) noexcept;

// Writes `q` (a CPU tensor) as above. `source_shape` is the shape of the file the source came from
// (q's meta has it collapsed to [rows, cols]); `extra_metadata` is added (e.g. "role", "recipe").
void write_nvfp4_safetensors(const std::string& path, const Nvfp4Tensor& q, const std::vector<int64_t>& source_shape,
                             const std::map<std::string, std::string>& extra_metadata = {});

// A loaded NVFP4 file: the bytes, and the tensor viewing them (so not copyable: a copy's tensor
// would still view the original's bytes; moving is fine, the bytes stay where they are).
struct Nvfp4File {
  SafetensorsFile file;
  Nvfp4Tensor tensor;  // from_parts views into file.tensors
  Nvfp4File() = default;
  Nvfp4File(const Nvfp4File&) = delete;
  Nvfp4File& operator=(const Nvfp4File&) = delete;
  Nvfp4File(Nvfp4File&&) = default;
  Nvfp4File& operator=(Nvfp4File&&) = default;
};
// Reads and checks a file written by write_nvfp4_safetensors: Error(kIo) when "format" is not
// kNvfp4FormatName, a metadata value is missing or malformed, or a tensor is missing; the shapes are
// checked by Nvfp4Tensor::from_parts.
Nvfp4File read_nvfp4_safetensors(const std::string& path);

// A host copy of a CPU view of rank 1 or 2 whose last dimension is contiguous.
HostTensor host_copy(const TensorView& view);

// Reads a whole file; Error(kIo) naming the file and the reason when it cannot.
std::vector<uint8_t> read_file_bytes(const std::string& path);
// Writes (replaces) a whole file; Error(kIo) naming the file and the reason when it cannot.
void write_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace fp4kit::cli

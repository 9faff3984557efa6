// src/cuda/common/read_ceiling.hpp: the time to read a set of device buffers once, the memory
// ceiling of a kernel that must stream them (bench gemm's decode shapes: B's NVFP4 codes and scales).
#pragma once

#include <cstddef>

namespace fp4kit::cuda {

// Reads `count` (1 or 2) device buffers once, in one kernel on `stream`: each 16-byte aligned, its
// size a multiple of 16. Writes nothing but possibly one word to `sink` (a device word): the reads
// cannot be dropped. Throws fp4kit::Error on a bad argument or a launch failure.
void read_buffers(const void* const* buffers, const std::size_t* bytes, int count, unsigned* sink, void* stream);

}  // namespace fp4kit::cuda

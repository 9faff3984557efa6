// src/core/memory.hpp: raw device memory, implemented by the CUDA layer when it is compiled in
// (src/dispatch/device_memory.cpp) and otherwise failing with a named reason.
#pragma once

#include <cstddef>

#include "fp4kit/types.hpp"

namespace fp4kit::detail {

// Zero-filled allocation of `bytes` on a CUDA device; throws Error on failure.
void* device_alloc(std::size_t bytes, int device_index);
void device_free(void* ptr, int device_index) noexcept;

}  // namespace fp4kit::detail

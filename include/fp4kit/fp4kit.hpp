// fp4kit/fp4kit.hpp: the whole C++ API. Host-only: no CUDA header is needed to include it.
#pragma once

#include "fp4kit/dispatch.hpp"
#include "fp4kit/error.hpp"
#include "fp4kit/formats.hpp"
#include "fp4kit/layout.hpp"
#include "fp4kit/ops.hpp"
#include "fp4kit/recipe.hpp"
#include "fp4kit/tensor.hpp"
#include "fp4kit/types.hpp"

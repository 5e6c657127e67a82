// Strided 2-D views of at::Tensor for the CPU interval GEMMs.
#pragma once

#include <ATen/core/Tensor.h>

#include "interval_gemm.h"

namespace inn::cpu {

template <typename T>
ConstView<T> const_view(const at::Tensor& t) {
  return {t.const_data_ptr<T>(), t.stride(0), t.stride(1)};
}

template <typename T>
View<T> view(at::Tensor& t) {
  return {t.mutable_data_ptr<T>(), t.stride(0), t.stride(1)};
}

}  // namespace inn::cpu

// The two elementwise passes around the products of the point-weight form (library_path.cpp):
//
//   before:  (a, b) -> (a + b, b - a)                   [bounds -> twice midpoint and radius]
//   after:   (s, d) -> ((s - d) / 2, (s + d) / 2)       [products -> the two bounds]
//
// On the CPU each is one parallel pass over memory (the unfused ATen composition made five
// passes around the two products, which cost a point-weight layer about 40 % on top of its two
// products); `after` works in place and reports whether every operand was finite in the same
// pass. On CUDA both are ATen elementwise ops and the finiteness is a device flag (no host sync).
#pragma once

#include <ATen/core/Tensor.h>

#include <utility>

namespace inn::library {

// (a + b, b - a), each shaped and laid out like `a`; b has a's sizes.
std::pair<at::Tensor, at::Tensor> sum_difference(const at::Tensor& a, const at::Tensor& b);

// s <- (s - d) / 2 and d <- (s + d) / 2 in place (s and d equally shaped and laid out, dense).
// Returns whether all of s and d were finite. On CUDA that is left to the device: the return
// value is true and `nonfinite_flag` a device bool (library_path.h, Routed::nonfinite).
bool halve_sum_difference_(at::Tensor& s, at::Tensor& d, at::Tensor& nonfinite_flag);

}  // namespace inn::library

// The elementwise passes around the products of the point-weight form (library_path.cpp):
//
//   before:  (a, b) -> (a + b, b - a)                   [bounds -> twice midpoint and radius]
//   after:   (s, d) -> ((s - d) / 2, (s + d) / 2)       [products -> the two bounds]
//   (the input gradient's tie rule and the weight gradient's select by sign folded into `after`)
//
// On the CPU each is one parallel pass over memory (the unfused ATen composition made five
// passes around the two products, which cost a point-weight layer about 40 % on top of its two
// products); `after` works in place and reports whether every operand was finite in the same
// pass. On CUDA both are ATen elementwise ops and the finiteness is a device flag (no host sync).
#pragma once

#include <ATen/core/Tensor.h>

#include <utility>

namespace inn::library {

// (a + b, b - a), each shaped and laid out like `a`; b has a's sizes. With `channels_last`, a
// channels-first 4-D `a` on the CPU gives channels-last results (the pass changes the order).
std::pair<at::Tensor, at::Tensor> sum_difference(const at::Tensor& a, const at::Tensor& b,
                                                 bool channels_last = false);

// s <- (s - d) / 2 and d <- (s + d) / 2 (s and d equally shaped and laid out, dense): in place,
// except that channels-last 4-D s and d on the CPU are replaced by new channels-first tensors.
// Returns whether all of s and d were finite. On CUDA that is left to the device: the return
// value is true and `nonfinite_flag` a device bool (library_path.h, Routed::nonfinite).
bool halve_sum_difference_(at::Tensor& s, at::Tensor& d, at::Tensor& nonfinite_flag);

// The same for the input gradient of general-mode point weights, with its tie rule in the same
// pass: where !(l < h) (a point input, or NaN) the lower bound's candidate built from l is
// selected by both bounds, so s <- s + d (the whole gradient) and d <- 0. l and h have x's sizes.
bool halve_sum_difference_tie_(at::Tensor& s, at::Tensor& d, const at::Tensor& l,
                               const at::Tensor& h, at::Tensor& nonfinite_flag);

// The total weight gradient of a point weight from its products (library_path.h,
// weight_grad_point), P = S·c2 and Q = D·r2:
//   w > 0 (nonneg mode: w >= 0): (P + Q) / 2,   w < 0 (and general mode's w == 0): (P - Q) / 2
// into p in place (made dense; q and w read in its layout). Returns whether P, Q and w were all
// finite and sets `any_zero` (whether some w is 0), both from the same pass on the CPU; on CUDA
// as halve_sum_difference_, with any_zero true in general mode (no host look at w).
bool select_point_weight_grad_(at::Tensor& p, const at::Tensor& q, const at::Tensor& w,
                               bool input_nonneg, at::Tensor& nonfinite_flag, bool& any_zero);

// General mode's tie at w == 0 (both bounds select l): p <- T = S·l where w == 0, in place.
// Returns whether T was finite there (CUDA: T joins the device flag).
bool take_tie_where_zero_(at::Tensor& p, const at::Tensor& tie, const at::Tensor& w,
                          at::Tensor& nonfinite_flag);

}  // namespace inn::library

// The GEMM family of the CPU interval convolutions: the fused interval GEMMs (interval_gemm.h)
// around im2col / col2im (im2col.h). The op glue (interval_conv_cpu.cpp) uses it for the conv2d
// forward with many output channels per group (general mode; non-negative mode on small images,
// see forward_on_gemm in conv_cpu.h), and for a conv2d input gradient that has no pixel-lane
// direct form (stride > 1, or padding beyond the kernel's reach).
//
// A loop over chunks of column-side pixels (ChunkPlan). GEMM rows are pixels; every GEMM operand
// and result is a row-major chunk buffer (unit column stride), filled by im2col (or a pixel-row
// gather) and emptied by col2im (or a pixel-row scatter): the packed GEMMs read and write such
// rows about twice as fast as strided views straight into NCHW tensors. Parallelism is inside
// each step (the GEMM over its output blocks, im2col over rows, col2im over planes or row
// blocks); chunks and groups run in turn, since at::parallel_for does not nest.
//
// Per group: x columns (rows x Kg, Kg = C_in/groups * kh * kw), weight (C_out/groups x Kg),
// y pixel rows (rows x C_out/groups).
#include "conv_cpu.h"

namespace inn::cpu::conv {
namespace {

// The input bounds the backward-input GEMM reads, from `rows`. In nonneg mode they select by the
// weight's sign alone, so a zero stands in for the input (no im2col, no buffer).
template <typename T>
std::pair<ConstView<T>, ConstView<T>> input_bounds(bool nonneg, const RowBuffer<T>& rows) {
  static const T zero = T(0);
  if (nonneg) return {{&zero, 0, 0}, {&zero, 0, 0}};
  return {rows.const_lo(), rows.const_hi()};
}

}  // namespace

template <typename T>
void conv2d_forward_gemm(const KernelCall<T>& c) {
  const int64_t kg = c.g.big_depth(), out_g = c.group_channels();
  const ChunkPlan plan = c.plan(2 * int64_t(sizeof(T)) * (kg + out_g));
  RowBuffer<T> cols = c.buffer(plan, kg), ys = c.buffer(plan, out_g);
  c.for_each_group(plan, [&](const Chunk& chunk, int64_t grp) {
    c.im2col_group(c.o.x_lo, c.o.x_hi, grp, chunk, cols);
    const auto [w_lo, w_hi] = c.weight(grp, out_g, kg);
    interval_gemm_forward<T>(chunk.rows(), out_g, kg, cols.const_lo(), cols.const_hi(), w_lo,
                             w_hi, ys.view_lo(), ys.view_hi(), c.nonneg, false);
    c.scatter_add_group(ys, grp, chunk);
  });
}

template <typename T>
void conv2d_backward_input_gemm(const KernelCall<T>& c) {
  const int64_t kg = c.g.big_depth(), out_g = c.group_channels();
  const ChunkPlan plan = c.plan(2 * int64_t(sizeof(T)) * ((c.nonneg ? 1 : 2) * kg + out_g));
  RowBuffer<T> grads = c.buffer(plan, out_g), cols = c.buffer(plan, kg, !c.nonneg),
               dcols = c.buffer(plan, kg);
  c.for_each_group(plan, [&](const Chunk& chunk, int64_t grp) {
    c.gather_group(c.o.g_lo, c.o.g_hi, grp, chunk, grads);
    if (!c.nonneg) c.im2col_group(c.o.x_lo, c.o.x_hi, grp, chunk, cols);
    const auto [x_lo, x_hi] = input_bounds(c.nonneg, cols);
    const auto [w_lo, w_hi] = c.weight(grp, out_g, kg);
    interval_gemm_backward_input<T>(chunk.rows(), out_g, kg, grads.const_lo(), grads.const_hi(),
                                    x_lo, x_hi, w_lo, w_hi, dcols.view_lo(), dcols.view_hi(),
                                    c.nonneg, false);
    c.col2im_add_group(dcols, grp, chunk);
  });
}

template void conv2d_forward_gemm<float>(const KernelCall<float>&);
template void conv2d_forward_gemm<double>(const KernelCall<double>&);
template void conv2d_backward_input_gemm<float>(const KernelCall<float>&);
template void conv2d_backward_input_gemm<double>(const KernelCall<double>&);

}  // namespace inn::cpu::conv

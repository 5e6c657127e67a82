// Host side of the tile kernels: the launch plan (grid, depth slices) and the launch sequence,
// shared by the CUDA launchers (csrc/cuda/*.cu) and the CPU emulation
// (python_tests/cuda_emulation/), which differ only in the Runtime they pass:
//
//   struct Runtime {
//     template <typename Problem, bool kNonneg> void launch_tile(index_t blocks, int splits,
//                                                                const Problem&);
//     template <typename T> void launch_reduce(index_t blocks, const TileOutput<T>&, int splits);
//     void* workspace(index_t bytes);  // device memory valid until the launches have run
//     void check(bool ok, const char* message);  // raises unless ok
//   };
//
// Torch-free. Host code only.
#pragma once

#include "interval_tile_kernel.cuh"

namespace inn::kernels {

// A depth slice keeps at least this many terms (so the extra pass over the workspace stays cheap).
constexpr index_t kMinSplitDepth = 512;
constexpr index_t kMaxSplits = 64;
// When there are fewer output tiles than SMs, the depth is split until there are about this many
// blocks per SM (two 256-thread blocks keep an SM busy while one waits at a barrier).
constexpr index_t kTargetBlocksPerSm = 2;
constexpr index_t kMaxGridX = 0x7fffffff;

inline index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }
inline index_t min_of(index_t a, index_t b) { return a < b ? a : b; }

// Fills the tile counts and the depth slicing of `shape` (rows, cols, depth, groups given). The
// depth is split only when the tiles alone leave SMs idle, and every slice keeps at least
// min_split_depth terms (a parameter so the emulation can exercise splits on tiny shapes).
inline void plan_tiles(TileShape& shape, int sm_count, index_t min_split_depth = kMinSplitDepth) {
  shape.row_tiles = ceil_div(shape.rows, kTileRows);
  shape.col_tiles = ceil_div(shape.cols, kTileCols);
  const index_t tiles = shape.row_tiles * shape.col_tiles * shape.groups;
  const index_t target = static_cast<index_t>(sm_count) * kTargetBlocksPerSm;
  index_t splits = 1;
  if (tiles > 0 && tiles < sm_count && min_split_depth > 0 && shape.depth >= 2 * min_split_depth) {
    splits = min_of(min_of(ceil_div(target, tiles), shape.depth / min_split_depth), kMaxSplits);
  }
  shape.chunk = ceil_div(ceil_div(shape.depth, splits), kTileDepth) * kTileDepth;
  shape.splits = shape.chunk > 0 ? static_cast<int>(ceil_div(shape.depth, shape.chunk)) : 1;
}

inline index_t reduce_blocks(index_t numel, int sm_count) {
  return min_of(ceil_div(numel, kTileThreads), static_cast<index_t>(sm_count) * 8);
}

// Plans and launches one problem: nothing for an empty output; a zero depth still launches, so the
// output is the bias (or zero).
// `run_if`: a device flag guarding the launches (TileOutput::run_if), or null.
template <typename Runtime, typename Problem>
void run_tile_problem(Runtime& rt, Problem p, bool input_nonneg, int sm_count,
                      index_t min_split_depth = kMinSplitDepth, const bool* run_if = nullptr) {
  using Acc = typename Problem::Acc;
  if (p.out.numel == 0) return;
  p.out.run_if = run_if;
  plan_tiles(p.shape, sm_count, min_split_depth);
  const index_t blocks = p.shape.row_tiles * p.shape.col_tiles * p.shape.groups;
  rt.check(blocks <= kMaxGridX, "inn_cuda: the output has too many tiles for one kernel launch");
  if (p.shape.splits > 1) {
    const index_t slice = p.shape.splits * p.out.numel;
    Acc* partial = static_cast<Acc*>(rt.workspace(2 * slice * static_cast<index_t>(sizeof(Acc))));
    p.out.split_lo = partial;
    p.out.split_hi = partial + slice;
  }
  if (input_nonneg) {
    rt.template launch_tile<Problem, true>(blocks, p.shape.splits, p);
  } else {
    rt.template launch_tile<Problem, false>(blocks, p.shape.splits, p);
  }
  if (p.shape.splits > 1) {
    rt.template launch_reduce<typename Problem::T>(reduce_blocks(p.out.numel, sm_count), p.out,
                                                   p.shape.splits);
  }
}

}  // namespace inn::kernels

// Host side of the tile kernels: the launch plan (grid, depth slices) and the launch sequence,
// shared by the CUDA launchers (csrc/cuda/*.cu) and the CPU emulation
// (python_tests/cuda_emulation/), which differ only in the Runtime they pass:
//
//   struct Runtime {
//     template <typename Problem, typename Config, bool kNonneg>
//     void launch_tile(index_t blocks, int splits, const Problem&);  // kTileThreads per block
//     template <typename T> void launch_reduce(index_t blocks, const TileOutput<T>&, int splits);
//     void* workspace(index_t bytes);  // device memory valid until the launches have run
//     void check(bool ok, const char* message);  // raises unless ok
//   };
//
// Torch-free. Host code only.
#pragma once

#include <optional>

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

// The tile configuration (tile_config.cuh) for a problem of rows x cols outputs per group, each a
// sum of `depth` terms. The thresholds are reasoned from tile occupancy, not measured (no GPU has
// run these kernels yet):
//  * rows <= 32 (and no more rows than columns): FewRowsTile. Up to 32 rows, a 64-row tile leaves
//    at least half its rows idle, while 16-row tiles keep at least 53 % busy (17 rows in two);
//    above 32 the square tile's larger register tile outweighs its idle rows (4 x 4: 8
//    shared-memory reads per 16 terms; 2 x 4: 6 per 8). This is every convolution with at most 32
//    output channels per group (forward) or input channels per group (input gradient), and the
//    1-channel heads. "No more rows than columns": when both are small, tile along the larger.
//  * ... and depth <= 8: ShallowTile, the same with 8-deep steps. A 16-deep step would stage at
//    least as many zero slices as terms; from 9 terms on, 8-deep steps need two steps (two more
//    barriers) where a 16-deep step needs one, and the kernel computes only the terms that exist
//    either way. Only the few-rows shape has a shallow variant: that is where short reductions
//    occur (1x1 heads, their input gradients), and each variant is one more kernel per problem.
//  * cols <= 32: FewColsTile, the mirror of the first rule (a linear layer with few outputs, the
//    weight gradient of a convolution with few input channels x taps).
//  * otherwise SquareTile.
inline Tile choose_tile(index_t rows, index_t cols, index_t depth) {
  if (rows <= 32 && rows <= cols) return depth <= 8 ? Tile::kShallow : Tile::kFewRows;
  if (cols <= 32) return Tile::kFewCols;
  return Tile::kSquare;
}

// Fills the tile counts and the depth slicing of `shape` (rows, cols, depth, groups given) for
// tile configuration Config. The depth is split only when the tiles alone leave SMs idle, and
// every slice keeps at least min_split_depth terms (a parameter so the emulation can exercise
// splits on tiny shapes).
template <typename Config>
void plan_tiles(TileShape& shape, int sm_count, index_t min_split_depth = kMinSplitDepth) {
  shape.row_tiles = ceil_div(shape.rows, Config::kRows);
  shape.col_tiles = ceil_div(shape.cols, Config::kCols);
  const index_t tiles = shape.row_tiles * shape.col_tiles * shape.groups;
  const index_t target = static_cast<index_t>(sm_count) * kTargetBlocksPerSm;
  index_t splits = 1;
  if (tiles > 0 && tiles < sm_count && min_split_depth > 0 && shape.depth >= 2 * min_split_depth) {
    splits = min_of(min_of(ceil_div(target, tiles), shape.depth / min_split_depth), kMaxSplits);
  }
  shape.chunk = ceil_div(ceil_div(shape.depth, splits), Config::kDepth) * Config::kDepth;
  shape.splits = shape.chunk > 0 ? static_cast<int>(ceil_div(shape.depth, shape.chunk)) : 1;
}

inline index_t reduce_blocks(index_t numel, int sm_count) {
  return min_of(ceil_div(numel, kTileThreads), static_cast<index_t>(sm_count) * 8);
}

// Plans and launches one problem in tile configuration Config.
template <typename Config, typename Runtime, typename Problem>
void run_tiles(Runtime& rt, Problem p, bool input_nonneg, int sm_count, index_t min_split_depth) {
  using Acc = typename Problem::Acc;
  plan_tiles<Config>(p.shape, sm_count, min_split_depth);
  const index_t blocks = p.shape.row_tiles * p.shape.col_tiles * p.shape.groups;
  rt.check(blocks <= kMaxGridX, "inn_cuda: the output has too many tiles for one kernel launch");
  if (p.shape.splits > 1) {
    const index_t slice = p.shape.splits * p.out.numel;
    Acc* partial = static_cast<Acc*>(rt.workspace(2 * slice * static_cast<index_t>(sizeof(Acc))));
    p.out.split_lo = partial;
    p.out.split_hi = partial + slice;
  }
  if (input_nonneg) {
    rt.template launch_tile<Problem, Config, true>(blocks, p.shape.splits, p);
  } else {
    rt.template launch_tile<Problem, Config, false>(blocks, p.shape.splits, p);
  }
  if (p.shape.splits > 1) {
    rt.template launch_reduce<typename Problem::T>(reduce_blocks(p.out.numel, sm_count), p.out,
                                                   p.shape.splits);
  }
}

// Plans and launches one problem in the configuration choose_tile picks (or `tile`, which the
// emulation tests use to run every configuration): nothing for an empty output; a zero depth
// still launches, so the output is the bias (or zero).
// `run_if`: a device flag guarding the launches (TileOutput::run_if), or null.
template <typename Runtime, typename Problem>
void run_tile_problem(Runtime& rt, Problem p, bool input_nonneg, int sm_count,
                      index_t min_split_depth = kMinSplitDepth, const bool* run_if = nullptr,
                      std::optional<Tile> tile = std::nullopt) {
  if (p.out.numel == 0) return;
  p.out.run_if = run_if;
  with_tile(tile.value_or(choose_tile(p.shape.rows, p.shape.cols, p.shape.depth)),
            [&](auto config) {
              run_tiles<decltype(config)>(rt, p, input_nonneg, sm_count, min_split_depth);
            });
}

}  // namespace inn::kernels

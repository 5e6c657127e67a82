// The tile shapes of the interval tile kernel (interval_tile_kernel.cuh): a block computes a
// kRows x kCols output tile in depth steps of kDepth terms, each of its kTileThreads threads a
// kThreadRows x kThreadCols register tile. The launch plan (tile_runner.cuh: choose_tile) picks
// one configuration per call from the problem's (rows, cols, depth).
//
// Why several: a convolution's rows are its output channels per group, and the U-Net layers here
// have 1-32 of them; in one 64-row tile a 16-channel layer uses 25 % of the rows, a 1-channel head
// 1.6 %. Every configuration is instantiated for every problem, element type and mode, so the set
// stays small (compile time and binary size grow with it). None has been timed on a GPU yet.
//
// Shared memory per block (interval_tile_kernel.cuh: both bounds of the A and B tiles, each row
// padded by one element; plus the conv problems' depth table, 2 x kDepth entries of 24 bytes):
//                         float (also half types)   double
//   SquareTile   64x64x16      16,640 B             33,280 B
//   FewRowsTile 16x128x16      18,688 B             37,376 B
//   FewColsTile 128x16x16      18,688 B             37,376 B
//   ShallowTile  16x128x8       9,344 B             18,688 B
// all under the 48 KB of static shared memory a block may have (checked in the kernel), and small
// enough for several blocks per SM.
//
// Torch-free.
#pragma once

#include "interval_dtype.cuh"

namespace inn::kernels {

// Threads per block of every configuration and of split_reduce_kernel: one block size, so the
// runtimes launch every kernel alike.
constexpr int kTileThreads = 256;

template <int kRows_, int kCols_, int kDepth_, int kThreadRows_, int kThreadCols_>
struct TileConfig {
  static constexpr int kRows = kRows_, kCols = kCols_, kDepth = kDepth_;
  static constexpr int kThreadRows = kThreadRows_, kThreadCols = kThreadCols_;
  // Thread (ty, tx) owns rows ty + i * kThreadsPerCol and columns tx + j * kThreadsPerRow.
  static constexpr int kThreadsPerRow = kCols / kThreadCols;
  static constexpr int kThreadsPerCol = kRows / kThreadRows;
  static_assert(kRows % kThreadRows == 0 && kCols % kThreadCols == 0,
                "the register tiles cover the output tile");
  static_assert(kThreadsPerRow * kThreadsPerCol == kTileThreads,
                "one register tile per thread, every thread busy");
  static_assert(kTileThreads % kDepth == 0,
                "a thread stages elements of one depth index (along the depth) or one row");
};

// 16 x 16 threads of 4 x 4: the most reuse per shared-memory read (8 reads per 16 terms).
using SquareTile = TileConfig<64, 64, 16, 4, 4>;
// 8 x 32 threads of 2 x 4, for few rows (output channels) and many columns (pixels).
using FewRowsTile = TileConfig<16, 128, 16, 2, 4>;
// 32 x 8 threads of 4 x 2: the mirror, for few columns (a linear layer with few outputs, the
// weight gradient of a convolution with few input channels).
using FewColsTile = TileConfig<128, 16, 16, 4, 2>;
// FewRowsTile with 8-deep steps, for reductions of at most 8 terms (a 1x1 head over 8 channels,
// its 1-term input gradient): a 16-deep step would stage at least as many zeros as terms.
using ShallowTile = TileConfig<16, 128, 8, 2, 4>;

enum class Tile { kSquare, kFewRows, kFewCols, kShallow };
constexpr int kTileCount = 4;

// Calls f(Config{}) with the configuration `tile` names: the one map from Tile to the types.
template <typename F>
void with_tile(Tile tile, const F& f) {
  switch (tile) {
    case Tile::kSquare: f(SquareTile{}); break;
    case Tile::kFewRows: f(FewRowsTile{}); break;
    case Tile::kFewCols: f(FewColsTile{}); break;
    case Tile::kShallow: f(ShallowTile{}); break;
  }
}

}  // namespace inn::kernels

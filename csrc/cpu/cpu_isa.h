// The SIMD instruction set the CPU kernels dispatch to at run time (cpu_isa.cpp).
//
// The extension is built without -march: the AVX-512 and AVX2 kernels are compiled per file with
// target pragmas (gemm_avx512.cpp, gemm_avx2.cpp), and one of them (or the scalar kernels) is
// chosen at run time. Torch-free, like gemm_isa.h.
#pragma once

#include <string>
#include <vector>

namespace inn::cpu {

struct IsaTable;  // gemm_isa.h

// The kernels in use: on first use, the ones INN_CUDA_CPU_ISA names (an error if the CPU lacks
// them), else the widest the CPU supports; afterwards whatever set_isa chose.
const IsaTable& active_table();

// "avx512", "avx2" or "scalar": the name of active_table().
const char* active_isa();

// The instruction sets this CPU supports, widest first ("scalar" always).
std::vector<std::string> supported_isas();

// Routes every later CPU kernel call to `isa` ("avx512", "avx2", "scalar", or "default" for the
// first-use choice above) and returns the name now active. An unknown name, or one the CPU lacks,
// is an error and changes nothing. For tests and benchmarks (the private op
// inn_cuda::_set_cpu_isa): not meant to be called while kernels run on other threads.
std::string set_isa(const std::string& isa);

}  // namespace inn::cpu

// The SIMD instruction set the CPU kernels dispatch to at run time on this machine.
#pragma once

namespace inn::cpu {

// "avx512", "avx2" or "scalar".
const char* active_isa();

}  // namespace inn::cpu

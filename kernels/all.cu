// Every kernel in one translation unit, for compiling with hipcc or nvcc directly
// (scripts/hip-check.sh). The library itself concatenates the same files in the same order
// and hands them to NVRTC / hipRTC (src/backend/gpu/source.rs).
#if defined(__HIPCC__) && !defined(__HIPCC_RTC__)
#include <hip/hip_runtime.h>
#endif
#include "compat.h"
#include "quant.cuh"
#include "matvec.cu"
#include "matvec_q8.cu"
#include "matvec_q8k.cu"
#include "mmq.cu"
#include "mmq_k.cu"
#include "ops.cu"
#include "fused.cu"
#include "attention.cu"
#include "attention_mma.cu"
#include "moe.cu"

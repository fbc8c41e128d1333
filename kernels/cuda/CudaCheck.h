//===- CudaCheck.h - CUDA / cuBLAS errors as absl::Status -------*- C++ -*-===//
//
// Every CUDA runtime and cuBLAS call of the kernels goes through one of these
// macros, so a device error reaches the caller as a Status naming the file,
// line and call that failed instead of being lost or aborting.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_KERNELS_CUDA_CUDACHECK_H
#define CROSSPOOL_KERNELS_CUDA_CUDACHECK_H

#include "absl/status/status.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <atomic>

namespace crosspool::kernels::cuda {

/// "FILE:LINE: CALL failed: cudaErrorName (description)"; out-of-memory maps
/// to ResourceExhausted, invalid arguments to InvalidArgument, the rest to
/// Internal.
absl::Status cudaErrorStatus(cudaError_t err, const char *call,
                             const char *file, int line);

/// The same for cuBLAS status codes.
absl::Status cublasErrorStatus(cublasStatus_t st, const char *call,
                               const char *file, int line);

/// A process-wide on/off switch: `sw` holds -1 until first read, then 0 or
/// 1; the first read takes `envName` ("0"/"off" or "1"/"on"), else `dflt`.
/// A setter storing 0/1 before or during the first read wins.
bool switchValue(std::atomic<int> &sw, const char *envName, bool dflt = true);

} // namespace crosspool::kernels::cuda

/// Returns a Status from the enclosing function when a CUDA call fails.
#define CP_CUDA_RETURN_IF_ERROR(expr)                                          \
  do {                                                                         \
    cudaError_t cp_cuda_err_ = (expr);                                         \
    if (cp_cuda_err_ != cudaSuccess)                                           \
      return ::crosspool::kernels::cuda::cudaErrorStatus(cp_cuda_err_, #expr,  \
                                                         __FILE__, __LINE__);  \
  } while (0)

/// Returns a Status when a cuBLAS call fails.
#define CP_CUBLAS_RETURN_IF_ERROR(expr)                                        \
  do {                                                                         \
    cublasStatus_t cp_cublas_st_ = (expr);                                     \
    if (cp_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                \
      return ::crosspool::kernels::cuda::cublasErrorStatus(                    \
          cp_cublas_st_, #expr, __FILE__, __LINE__);                           \
  } while (0)

/// Checks the launch that precedes it (bad configuration, missing image).
#define CP_CUDA_RETURN_IF_LAUNCH_FAILED(kernelName)                            \
  do {                                                                         \
    cudaError_t cp_cuda_err_ = cudaGetLastError();                             \
    if (cp_cuda_err_ != cudaSuccess)                                           \
      return ::crosspool::kernels::cuda::cudaErrorStatus(                      \
          cp_cuda_err_, "launch of " kernelName, __FILE__, __LINE__);          \
  } while (0)

#endif // CROSSPOOL_KERNELS_CUDA_CUDACHECK_H

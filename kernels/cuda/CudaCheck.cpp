//===- CudaCheck.cpp - CUDA / cuBLAS errors as absl::Status ---------------===//

#include "kernels/cuda/CudaCheck.h"

#include "absl/strings/str_cat.h"

namespace crosspool::kernels::cuda {

absl::Status cudaErrorStatus(cudaError_t err, const char *call,
                             const char *file, int line) {
  std::string msg = absl::StrCat(file, ":", line, ": ", call,
                                 " failed: ", cudaGetErrorName(err), " (",
                                 cudaGetErrorString(err), ")");
  switch (err) {
  case cudaErrorMemoryAllocation:
    return absl::ResourceExhaustedError(msg);
  case cudaErrorInvalidValue:
  case cudaErrorInvalidConfiguration:
    return absl::InvalidArgumentError(msg);
  case cudaErrorNoDevice:
  case cudaErrorInsufficientDriver:
    return absl::FailedPreconditionError(msg);
  default:
    return absl::InternalError(msg);
  }
}

absl::Status cublasErrorStatus(cublasStatus_t st, const char *call,
                               const char *file, int line) {
  std::string msg = absl::StrCat(file, ":", line, ": ", call,
                                 " failed: ", cublasGetStatusName(st), " (",
                                 cublasGetStatusString(st), ")");
  switch (st) {
  case CUBLAS_STATUS_ALLOC_FAILED:
    return absl::ResourceExhaustedError(msg);
  case CUBLAS_STATUS_INVALID_VALUE:
  case CUBLAS_STATUS_NOT_SUPPORTED:
    return absl::InvalidArgumentError(msg);
  default:
    return absl::InternalError(msg);
  }
}

} // namespace crosspool::kernels::cuda

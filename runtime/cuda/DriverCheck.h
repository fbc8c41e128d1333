//===- DriverCheck.h - CUDA driver API errors as absl::Status ---*- C++ -*-===//
//
// The KV pool talks to the driver API (cuMemCreate / cuMemMap ...); every
// such call goes through CP_CU_RETURN_IF_ERROR so a driver error reaches the
// caller as a Status naming file, line and call (kernels/cuda/CudaCheck.h does
// the same for the runtime API and cuBLAS).
//
// The driver functions are looked up at run time through the CUDA runtime
// (cudaGetDriverEntryPointByVersion) instead of linking libcuda, so binaries
// load, and GPU tests skip, on machines without a driver.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_CUDA_DRIVERCHECK_H
#define CROSSPOOL_RUNTIME_CUDA_DRIVERCHECK_H

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include <cuda.h>

namespace crosspool::runtime::cuda {

/// The driver entry points the KV pool uses.
struct DriverApi {
  decltype(&::cuMemCreate) memCreate = nullptr;
  decltype(&::cuMemRelease) memRelease = nullptr;
  decltype(&::cuMemMap) memMap = nullptr;
  decltype(&::cuMemUnmap) memUnmap = nullptr;
  decltype(&::cuMemSetAccess) memSetAccess = nullptr;
  decltype(&::cuMemAddressReserve) memAddressReserve = nullptr;
  decltype(&::cuMemAddressFree) memAddressFree = nullptr;
  decltype(&::cuMemGetAllocationGranularity) memGetAllocationGranularity =
      nullptr;
  decltype(&::cuGetErrorName) getErrorName = nullptr;
  decltype(&::cuGetErrorString) getErrorString = nullptr;
};

/// Looks the entry points up once (FailedPrecondition when the driver lacks
/// one, e.g. no driver installed).
absl::StatusOr<const DriverApi *> driverApi();

/// "FILE:LINE: CALL failed: CUDA_ERROR_NAME (description)"; out-of-memory is
/// ResourceExhausted, invalid values InvalidArgument, the rest Internal.
absl::Status driverErrorStatus(CUresult res, const char *call, const char *file,
                               int line);

} // namespace crosspool::runtime::cuda

#define CP_CU_RETURN_IF_ERROR(expr)                                            \
  do {                                                                         \
    CUresult cp_cu_res_ = (expr);                                              \
    if (cp_cu_res_ != CUDA_SUCCESS)                                            \
      return ::crosspool::runtime::cuda::driverErrorStatus(                    \
          cp_cu_res_, #expr, __FILE__, __LINE__);                              \
  } while (0)

#endif // CROSSPOOL_RUNTIME_CUDA_DRIVERCHECK_H

//===- DriverCheck.cpp - CUDA driver API errors as absl::Status -----------===//
#include "runtime/cuda/DriverCheck.h"

#include "absl/strings/str_cat.h"

#include <cuda_runtime_api.h>

namespace crosspool::runtime::cuda {

namespace {

template <typename Fn> absl::Status lookUp(const char *symbol, Fn *fn) {
  void *p = nullptr;
  cudaDriverEntryPointQueryResult q;
  cudaError_t err = cudaGetDriverEntryPointByVersion(symbol, &p, 12000,
                                                     cudaEnableDefault, &q);
  if (err != cudaSuccess || q != cudaDriverEntryPointSuccess || !p) {
    cudaGetLastError();
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA driver entry point ", symbol, " is not available (",
                     cudaGetErrorName(err), ")"));
  }
  *fn = reinterpret_cast<Fn>(p);
  return absl::OkStatus();
}

absl::StatusOr<DriverApi> loadDriverApi() {
  DriverApi api;
  absl::Status st;
  auto get = [&](const char *symbol, auto *fn) {
    if (st.ok())
      st = lookUp(symbol, fn);
  };
  get("cuMemCreate", &api.memCreate);
  get("cuMemRelease", &api.memRelease);
  get("cuMemMap", &api.memMap);
  get("cuMemUnmap", &api.memUnmap);
  get("cuMemSetAccess", &api.memSetAccess);
  get("cuMemAddressReserve", &api.memAddressReserve);
  get("cuMemAddressFree", &api.memAddressFree);
  get("cuMemGetAllocationGranularity", &api.memGetAllocationGranularity);
  get("cuGetErrorName", &api.getErrorName);
  get("cuGetErrorString", &api.getErrorString);
  if (!st.ok())
    return st;
  return api;
}

} // namespace

absl::StatusOr<const DriverApi *> driverApi() {
  static const absl::StatusOr<DriverApi> api = loadDriverApi();
  if (!api.ok())
    return api.status();
  return &*api;
}

absl::Status driverErrorStatus(CUresult res, const char *call, const char *file,
                               int line) {
  const char *name = nullptr, *text = nullptr;
  absl::StatusOr<const DriverApi *> api = driverApi();
  if (!api.ok() || (*api)->getErrorName(res, &name) != CUDA_SUCCESS)
    name = "unknown CUresult";
  if (!api.ok() || (*api)->getErrorString(res, &text) != CUDA_SUCCESS)
    text = "no description";
  std::string msg = absl::StrCat(file, ":", line, ": ", call, " failed: ", name,
                                 " (", text, ")");
  switch (res) {
  case CUDA_ERROR_OUT_OF_MEMORY:
    return absl::ResourceExhaustedError(msg);
  case CUDA_ERROR_INVALID_VALUE:
    return absl::InvalidArgumentError(msg);
  case CUDA_ERROR_NO_DEVICE:
  case CUDA_ERROR_NOT_SUPPORTED:
    return absl::FailedPreconditionError(msg);
  default:
    return absl::InternalError(msg);
  }
}

} // namespace crosspool::runtime::cuda

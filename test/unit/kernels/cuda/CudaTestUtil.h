//===- CudaTestUtil.h - Helpers of the CUDA kernel tests --------*- C++ -*-===//
//
// Device buffers that upload host floats in either storage type, NaN
// poisoning of outputs, and the comparison against the CPU kernels (the
// oracle). In bf16 mode the host inputs are rounded to bf16 first and the CPU
// kernel runs on those rounded values, so only the device's bf16 rounding of
// intermediates and outputs separates the two.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_TEST_UNIT_KERNELS_CUDA_CUDATESTUTIL_H
#define CROSSPOOL_TEST_UNIT_KERNELS_CUDA_CUDATESTUTIL_H

#include "kernels/cuda/Kernels.h"

#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace crosspool::kernels::cuda::testing {

/// Skips the test when no CUDA device is usable (CI machines).
#define CP_SKIP_WITHOUT_GPU()                                                  \
  do {                                                                         \
    int cpDevices_ = 0;                                                        \
    if (cudaGetDeviceCount(&cpDevices_) != cudaSuccess || cpDevices_ == 0) {   \
      cudaGetLastError();                                                      \
      GTEST_SKIP() << "no CUDA device";                                        \
    }                                                                          \
  } while (0)

#define CP_ASSERT_OK(expr)                                                     \
  do {                                                                         \
    absl::Status cpSt_ = (expr);                                               \
    ASSERT_TRUE(cpSt_.ok()) << cpSt_.ToString();                               \
  } while (0)

#define CP_ASSERT_CUDA(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

inline uint16_t toBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return 0x7fc0;
  u += 0x7fffu + ((u >> 16) & 1u); // round to nearest even
  return uint16_t(u >> 16);
}

inline float fromBf16(uint16_t b) {
  uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// v rounded to the storage type (identity for fp32).
inline std::vector<float> storageRound(std::vector<float> v, DType dt) {
  if (dt == DType::kBF16)
    for (float &f : v)
      f = fromBf16(toBf16(f));
  return v;
}

/// n floats uniform in [-scale, scale]; every check draws with its own seed.
inline std::vector<float> randomVec(size_t n, uint32_t seed,
                                    float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float &f : v)
    f = dist(gen);
  return v;
}

/// Owning device allocation.
class DeviceBuffer {
public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) { allocate(bytes); }
  ~DeviceBuffer() {
    if (ptr_)
      cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
  DeviceBuffer(DeviceBuffer &&o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
  }

  void allocate(size_t bytes) {
    bytes_ = std::max<size_t>(bytes, 16);
    if (cudaMalloc(&ptr_, bytes_) != cudaSuccess)
      ptr_ = nullptr;
  }
  void *get() const { return ptr_; }
  template <typename T> T *as() const { return static_cast<T *>(ptr_); }
  size_t bytes() const { return bytes_; }

  /// Fills with 0xFF bytes: NaN in fp32 and bf16, -1 in int32.
  void poison() { cudaMemset(ptr_, 0xff, bytes_); }

private:
  void *ptr_ = nullptr;
  size_t bytes_ = 0;
};

/// Uploads floats in the storage type.
inline DeviceBuffer upload(const std::vector<float> &v, DType dt) {
  DeviceBuffer b(v.size() * size_t(dtypeBytes(dt)));
  if (dt == DType::kF32) {
    cudaMemcpy(b.get(), v.data(), v.size() * 4, cudaMemcpyHostToDevice);
  } else {
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i)
      h[i] = toBf16(v[i]);
    cudaMemcpy(b.get(), h.data(), h.size() * 2, cudaMemcpyHostToDevice);
  }
  return b;
}

inline DeviceBuffer uploadInts(const std::vector<int32_t> &v) {
  DeviceBuffer b(v.size() * 4);
  cudaMemcpy(b.get(), v.data(), v.size() * 4, cudaMemcpyHostToDevice);
  return b;
}

/// Downloads n values of the storage type at `p` as floats.
inline std::vector<float> download(const void *p, size_t n, DType dt) {
  std::vector<float> v(n);
  if (dt == DType::kF32) {
    cudaMemcpy(v.data(), p, n * 4, cudaMemcpyDeviceToHost);
  } else {
    std::vector<uint16_t> h(n);
    cudaMemcpy(h.data(), p, n * 2, cudaMemcpyDeviceToHost);
    for (size_t i = 0; i < n; ++i)
      v[i] = fromBf16(h[i]);
  }
  return v;
}

inline std::vector<int32_t> downloadInts(const void *p, size_t n) {
  std::vector<int32_t> v(n);
  cudaMemcpy(v.data(), p, n * 4, cudaMemcpyDeviceToHost);
  return v;
}

/// max |got - want| / max |want|, or +inf when any value is not finite (an
/// unwritten, still poisoned, element is NaN).
inline double relErr(const std::vector<float> &got,
                     const std::vector<float> &want) {
  if (got.size() != want.size())
    return INFINITY;
  double maxDiff = 0, maxRef = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i]))
      return INFINITY;
    maxDiff = std::max(maxDiff, std::fabs(double(got[i]) - double(want[i])));
    maxRef = std::max(maxRef, std::fabs(double(want[i])));
  }
  return maxRef > 0 ? maxDiff / maxRef : maxDiff;
}

/// Tolerance of a comparison with the CPU kernels: fp32 math vs the CPU's
/// double accumulations, or one bf16 rounding of intermediates/outputs.
inline double tolerance(DType dt) { return dt == DType::kF32 ? 1e-5 : 2e-2; }

/// Synchronizes and fails on any asynchronous kernel error.
#define CP_ASSERT_SYNC()                                                       \
  do {                                                                         \
    cudaError_t cpE_ = cudaDeviceSynchronize();                                \
    ASSERT_EQ(cpE_, cudaSuccess) << cudaGetErrorString(cpE_);                  \
  } while (0)

inline int numSms() {
  int n = 0;
  cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, 0);
  return n > 0 ? n : 1;
}

} // namespace crosspool::kernels::cuda::testing

#endif // CROSSPOOL_TEST_UNIT_KERNELS_CUDA_CUDATESTUTIL_H

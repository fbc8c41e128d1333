//===- SyntheticInit.h - Seeded weight values, same on host and GPU -*- C++ -*-===//
//
// The one generator of synthetic weights (plans compiled from a config.json
// alone, and crosspool-decode-bench). A value depends only on (key, element
// index): a counter-based hash (splitmix64) gives four 16-bit uniforms whose
// integer sum, centred and scaled, approximates a normal (Irwin-Hall, 4
// terms: bounded at +-3.46 std). Only integer arithmetic, exact int->float
// conversions, one correctly rounded multiply and fmaf are used, so host C++
// and CUDA produce bit-identical values (no libm transcendental whose last
// bit differs between glibc and the CUDA math library).
//
// Plain C++ when not compiled by nvcc: no CUDA header is included.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_FORMAT_SYNTHETICINIT_H
#define CROSSPOOL_RUNTIME_FORMAT_SYNTHETICINIT_H

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string_view>

#if defined(__CUDACC__)
#define CP_SYNTH_HD __host__ __device__ __forceinline__
#else
#define CP_SYNTH_HD inline
#endif

namespace crosspool::synthetic {

/// How a synthetic weight's values are distributed (mirrors
/// plan::SyntheticInit; kept separate so this header needs no FlatBuffers).
enum class InitKind : uint8_t {
  kNormal = 0,        ///< normal(0, std): matrices, biases
  kOnePlusNormal = 1, ///< 1 + normal(0, std): RMSNorm weights
};

/// splitmix64 finalizer: a bijective 64-bit mix.
CP_SYNTH_HD uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// Stream key of one tensor: (seed, stream id). Tensors of one seed with
/// different stream ids draw independent values.
CP_SYNTH_HD uint64_t streamKey(uint64_t seed, uint64_t stream) {
  return splitmix64(splitmix64(seed) ^ (stream * 0xc2b2ae3d27d4eb4full));
}

/// Stream id of a named tensor (FNV-1a 64 of the name), so a value depends on
/// the checkpoint tensor name and not on its position in a plan: a tied
/// lm_head that names the embedding again gets the embedding's values.
inline uint64_t nameStream(std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

/// Standard deviation of the centred sum of four 16-bit uniforms:
/// sqrt(4 * (65536^2 - 1) / 12).
inline constexpr double kSumStd = 37837.22611142302;

/// The multiplier turning twice the centred integer sum into a value of
/// standard deviation `std` (computed once per tensor, on the host).
inline float scaleFor(float std) {
  return static_cast<float>(static_cast<double>(std) / (2.0 * kSumStd));
}

/// Element `index` of the tensor with key `key`, in fp32 (before any
/// rounding to the storage dtype). `scale` = scaleFor(std).
CP_SYNTH_HD float value(uint64_t key, uint64_t index, InitKind kind,
                        float scale) {
  uint64_t r = splitmix64(key ^ splitmix64(index));
  int32_t sum = static_cast<int32_t>(r & 0xffff) +
                static_cast<int32_t>((r >> 16) & 0xffff) +
                static_cast<int32_t>((r >> 32) & 0xffff) +
                static_cast<int32_t>(r >> 48);
  // Twice the centred sum is an exact integer (|.| < 2^19), so the
  // conversion is exact and one multiply is the only rounding.
  float c = static_cast<float>(2 * sum - 4 * 65535);
  if (kind == InitKind::kOnePlusNormal)
    return fmaf(c, scale, 1.0f); // one rounding, on both sides
  return c * scale;
}

/// fp32 -> bf16 bits, round to nearest even (NaN -> quiet NaN). Written out
/// so host and device round identically.
CP_SYNTH_HD uint16_t toBf16Bits(float f) {
#if defined(__CUDA_ARCH__)
  uint32_t u = __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
#endif
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return 0x7fc0;
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

CP_SYNTH_HD float fromBf16Bits(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

/// Element `index` as stored: rounded to bf16 (synthetic weights are bf16 in
/// the plan; fp32 storage keeps the bf16-rounded value so every backend and
/// precision sees the same model).
CP_SYNTH_HD uint16_t bf16Value(uint64_t key, uint64_t index, InitKind kind,
                               float scale) {
  return toBf16Bits(value(key, index, kind, scale));
}

/// One synthetic tensor: everything its values depend on.
struct TensorInit {
  uint64_t seed = 0;
  uint64_t stream = 0; ///< nameStream(tensor name), or any id (benches)
  InitKind kind = InitKind::kNormal;
  float std = 0.02f;
  bool roundToBf16 = true; ///< the weight's dtype is BF16 (false: F32)
};

/// Element `index` as the weight's dtype holds it, widened to fp32.
CP_SYNTH_HD float storedValue(uint64_t key, uint64_t index, InitKind kind,
                              float scale, bool roundToBf16) {
  float v = value(key, index, kind, scale);
  return roundToBf16 ? fromBf16Bits(toBf16Bits(v)) : v;
}

/// The host reference: `n` values of `t` as fp32 into `dst`.
inline void fillHost(float *dst, uint64_t n, const TensorInit &t) {
  const uint64_t key = streamKey(t.seed, t.stream);
  const float scale = scaleFor(t.std);
  for (uint64_t i = 0; i < n; ++i)
    dst[i] = storedValue(key, i, t.kind, scale, t.roundToBf16);
}

} // namespace crosspool::synthetic

#endif // CROSSPOOL_RUNTIME_FORMAT_SYNTHETICINIT_H

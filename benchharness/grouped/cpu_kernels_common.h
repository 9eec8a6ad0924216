// What the kernels share: the dead-index marker, vector types and loads, torch's
// max-pool rule on vectors, and input checks.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <cstring>

namespace bh {

constexpr uint8_t kDead = 4;  // the ReLU zeroed this output: no gradient flows back

// Channels are processed in blocks of kBlock, as vectors (GCC's vector extensions: one
// AVX register, or two SSE ones); weights come padded to a multiple of kBlock channels
// (zeros), and only the real channels are written.
constexpr int64_t kBlock = 8;
typedef float vfloat __attribute__((vector_size(kBlock * sizeof(float))));
typedef int32_t vint __attribute__((vector_size(kBlock * sizeof(int32_t))));

inline vfloat load_v(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store_v(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }

// Window position j wins over the best so far if greater, or NaN (torch's rule).
template <typename F, typename I>
inline void window_max_v(F v, int32_t j, F& best, I& where) {
  const I wins = (v > best) | (v != v);
  best = wins ? v : best;
  where = wins ? I{} + j : where;
}

// The conv kernels' vectors: BW lanes (8: one AVX register; 16: one AVX-512 register).
typedef float vfloat16 __attribute__((vector_size(16 * sizeof(float))));
typedef int32_t vint16 __attribute__((vector_size(16 * sizeof(int32_t))));
typedef uint8_t vbyte8 __attribute__((vector_size(8)));
typedef uint8_t vbyte16 __attribute__((vector_size(16)));
template <int BW>
struct VectorTypes;  // (GCC drops vector_size from a typedef that depends on BW)
template <>
struct VectorTypes<8> {
  using f = vfloat;
  using i = vint;
  using b = vbyte8;
};
template <>
struct VectorTypes<16> {
  using f = vfloat16;
  using i = vint16;
  using b = vbyte16;
};

template <int BW>
struct Lanes {
  using f = typename VectorTypes<BW>::f;
  using i = typename VectorTypes<BW>::i;
  using b = typename VectorTypes<BW>::b;

  static f load(const float* p) {
    f v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(float* p, f v) { std::memcpy(p, &v, sizeof v); }
  static i load_index(const uint8_t* p) {
    b v;
    std::memcpy(&v, p, sizeof v);
    return __builtin_convertvector(v, i);
  }
  static void store_index(uint8_t* p, i v) {
    const b narrow = __builtin_convertvector(v, b);
    std::memcpy(p, &narrow, sizeof narrow);
  }
  static f round_bf16(f v) {  // to the nearest bfloat16, ties to even; NaN stays NaN
    i u;
    std::memcpy(&u, &v, sizeof u);
    const i rounded = (u + 0x7FFF + ((u >> 16) & 1)) & static_cast<int32_t>(0xFFFF0000u);
    const i bits = (v != v) ? u : rounded;
    f r;
    std::memcpy(&r, &bits, sizeof r);
    return r;
  }
};

inline void check_cpu_contiguous(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == dtype, name, " has the wrong dtype");
}

}  // namespace bh

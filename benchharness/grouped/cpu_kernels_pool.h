// 2x2 max-pool + ReLU on channels-last activations, float32 or bfloat16 (see
// cpu_kernels.cpp).
#pragma once

#include "cpu_kernels_common.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace bh {

// Values as stored: float32 as itself, bfloat16 as its 16 high bits of a float32 (so
// widening is a shift and narrowing a pooled value, which is one of the inputs or zero,
// is exact).
template <typename Bits>
inline vfloat widen_v(const Bits* p) {
  if constexpr (sizeof(Bits) == 4) {
    return load_v(reinterpret_cast<const float*>(p));
  } else {
    vint u;
    for (int64_t c = 0; c < kBlock; ++c) u[c] = static_cast<int32_t>(p[c]) << 16;
    vfloat v;
    std::memcpy(&v, &u, sizeof v);
    return v;
  }
}

template <typename Bits>
inline void narrow_v(Bits* p, vfloat v, int64_t n) {
  if constexpr (sizeof(Bits) == 4) {
    float values[kBlock];
    store_v(values, v);
    std::copy(values, values + n, reinterpret_cast<float*>(p));
  } else {
    vint u;
    std::memcpy(&u, &v, sizeof u);
    for (int64_t c = 0; c < n; ++c) p[c] = static_cast<Bits>(static_cast<uint32_t>(u[c]) >> 16);
  }
}

// One pooled row: x points at input row 2r of an image (W, C), out/idx at pooled row r.
template <typename Bits>
void pool_row(const Bits* __restrict__ x, Bits* __restrict__ out,
                        uint8_t* __restrict__ idx, int64_t W, int64_t PW, int64_t C, bool relu) {
  for (int64_t pw = 0; pw < PW; ++pw) {
    const Bits* p0 = x + 2 * pw * C;
    const Bits* p1 = p0 + C;
    const Bits* p2 = p0 + W * C;
    const Bits* p3 = p2 + C;
    for (int64_t cb = 0; cb < C; cb += kBlock) {
      const int64_t n = std::min(kBlock, C - cb);
      vfloat v0, v1, v2, v3;
      if (n == kBlock) {
        v0 = widen_v(p0 + cb), v1 = widen_v(p1 + cb), v2 = widen_v(p2 + cb), v3 = widen_v(p3 + cb);
      } else {  // the last partial block: through zero-padded copies
        Bits t[4][kBlock] = {};
        std::copy(p0 + cb, p0 + cb + n, t[0]);
        std::copy(p1 + cb, p1 + cb + n, t[1]);
        std::copy(p2 + cb, p2 + cb + n, t[2]);
        std::copy(p3 + cb, p3 + cb + n, t[3]);
        v0 = widen_v(t[0]), v1 = widen_v(t[1]), v2 = widen_v(t[2]), v3 = widen_v(t[3]);
      }
      vfloat best = v0;
      vint where{};
      window_max_v(v1, 1, best, where);
      window_max_v(v2, 2, best, where);
      window_max_v(v3, 3, best, where);
      vint alive = vint{} - 1;
      if (relu) alive = (best > 0.0f) | (best != best);  // as for conv_pool_image
      const vfloat value = alive ? best : vfloat{};
      const vint index = alive ? where : vint{} + kDead;
      narrow_v(out + pw * C + cb, value, n);
      if (idx) {
        for (int64_t c = 0; c < n; ++c) idx[pw * C + cb + c] = static_cast<uint8_t>(index[c]);
      }
    }
  }
}

// One pooled row's input gradient: rows 2r and 2r+1 of an image (W, C), each value written
// once (the window's winner gets the gradient, the rest zero). Pure data movement, so it
// works on the values' bits.
template <typename Bits>
void unpool_row(const Bits* __restrict__ grad, const uint8_t* __restrict__ idx,
                          Bits* __restrict__ gin, int64_t W, int64_t PW, int64_t C) {
  for (int64_t pw = 0; pw < PW; ++pw) {
    Bits* q0 = gin + 2 * pw * C;
    Bits* q1 = q0 + C;
    Bits* q2 = q0 + W * C;
    Bits* q3 = q2 + C;
    const Bits* g = grad + pw * C;
    const uint8_t* id = idx + pw * C;
    for (int64_t c = 0; c < C; ++c) {
      const Bits v = g[c];
      const uint8_t j = id[c];
      q0[c] = j == 0 ? v : 0;
      q1[c] = j == 1 ? v : 0;
      q2[c] = j == 2 ? v : 0;
      q3[c] = j == 3 ? v : 0;
    }
  }
  if (W > 2 * PW) {  // an odd last column is outside every window
    std::fill(gin + 2 * PW * C, gin + W * C, 0);
    std::fill(gin + (W + 2 * PW) * C, gin + 2 * W * C, 0);
  }
}

// x: (B, H, W, C) float32 or bfloat16. Returns out (B, H/2, W/2, C) and idx (uint8).
inline std::vector<at::Tensor> pool_relu_forward(const at::Tensor& x, bool relu, bool need_idx) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous() && x.dim() == 4, "x: contiguous 4-D CPU");
  const bool wide = x.scalar_type() == at::kFloat;
  TORCH_CHECK(wide || x.scalar_type() == at::kBFloat16, "x: float32 or bfloat16");
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const int64_t PH = H / 2, PW = W / 2;
  TORCH_CHECK(PH > 0 && PW > 0, "the pooled output would be empty");
  auto out = at::empty({B, PH, PW, C}, x.options());
  auto idx = need_idx ? at::empty({B, PH, PW, C}, x.options().dtype(at::kByte))
                      : at::empty({0}, x.options().dtype(at::kByte));
  uint8_t* ip = need_idx ? idx.data_ptr<uint8_t>() : nullptr;
  auto run = [&](auto* xp, auto* op) {
    at::parallel_for(0, B * PH, 1, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t b = row / PH, r = row % PH;
        pool_row(xp + (b * H + 2 * r) * W * C, op + row * PW * C,
                 ip ? ip + row * PW * C : nullptr, W, PW, C, relu);
      }
    });
  };
  if (wide) {
    run(static_cast<const uint32_t*>(x.data_ptr()), static_cast<uint32_t*>(out.data_ptr()));
  } else {
    run(static_cast<const uint16_t*>(x.data_ptr()), static_cast<uint16_t*>(out.data_ptr()));
  }
  return {out, idx};
}

// grad, idx: (B, PH, PW, C); returns the input gradient (B, H, W, C), grad's dtype (any
// 2- or 4-byte one).
inline at::Tensor pool_relu_backward(const at::Tensor& grad, const at::Tensor& idx, int64_t H,
                              int64_t W) {
  TORCH_CHECK(grad.device().is_cpu() && grad.is_contiguous() && grad.dim() == 4, "grad");
  TORCH_CHECK(grad.element_size() == 4 || grad.element_size() == 2, "grad: 2- or 4-byte dtype");
  check_cpu_contiguous(idx, "idx", at::kByte);
  const int64_t B = grad.size(0), PH = grad.size(1), PW = grad.size(2), C = grad.size(3);
  TORCH_CHECK(idx.sizes() == grad.sizes() && PH == H / 2 && PW == W / 2, "shapes do not match");
  auto gin = at::empty({B, H, W, C}, grad.options());
  const uint8_t* ip = idx.data_ptr<uint8_t>();
  auto run = [&](auto* gp, auto* op) {
    at::parallel_for(0, B * PH, 1, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t b = row / PH, r = row % PH;
        unpool_row(gp + row * PW * C, ip + row * PW * C, op + (b * H + 2 * r) * W * C, W, PW, C);
      }
    });
    if (H > 2 * PH) {  // an odd last row is outside every window
      for (int64_t b = 0; b < B; ++b) std::fill(op + (b * H + H - 1) * W * C, op + (b * H + H) * W * C, 0);
    }
  };
  if (grad.element_size() == 4) {
    run(static_cast<const uint32_t*>(grad.data_ptr()), static_cast<uint32_t*>(gin.data_ptr()));
  } else {
    run(static_cast<const uint16_t*>(grad.data_ptr()), static_cast<uint16_t*>(gin.data_ptr()));
  }
  return gin;
}

}  // namespace bh

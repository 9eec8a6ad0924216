// Fused CPU kernels of the grouped engine (loaded by benchharness/grouped/cpu_kernels.py,
// used by benchharness/grouped/conv_pool.py, which documents the contracts).
//
// Both kernels work on channels-last tensors, (B, H, W, channels) in memory, and on a
// 2x2 stride-2 max-pool followed (or preceded: the result is the same) by a ReLU. They
// replace torch's max_pool2d_with_indices, whose int64 indices are twice the size of a
// float input and whose backward zero-fills the whole input gradient before scattering
// into it: here the index of the winning window position is one byte (kDead when the
// ReLU zeroes the output, so no gradient flows), and the backward writes each input
// gradient once. NaN passes through both, and so does its gradient, as in torch.
//
// conv_relu_pool additionally computes the convolution before the pool for a layer whose
// input needs no gradient (the first layer), per member with its own weights, and never
// writes the full-resolution activation: the backward recomputes nothing and gathers the
// few input values each surviving output saw, straight into the weight gradient.
//
// Tie and NaN rules follow torch's CPU max-pool: window positions in row-major order,
// a later value wins only if greater, or if it is NaN.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr uint8_t kDead = 4;  // the ReLU zeroed this output: no gradient flows back

// The hot loops vectorise over channels: compiled for AVX-512 and AVX2 besides the
// baseline, the best chosen when the library loads (so a cached build runs on any x86-64).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BH_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BH_CLONES
#endif
// The accumulators and the weights never overlap: let GCC vectorise without checking.
#define BH_IVDEP _Pragma("GCC ivdep")

// The larger of a window's values so far and the new one (torch's rule: a later value wins
// if greater or NaN), written as selects so that the channel loops vectorise.
template <typename Index>
inline void window_max(float v, int j, float& best, Index& at) {
  const bool wins = v > best || v != v;
  best = wins ? v : best;
  at = wins ? static_cast<Index>(j) : at;
}

// One image's input with its zero padding, (H + 2 pad_h, W + 2 pad_w, G*Cin), so that the
// taps below need no bounds checks; and each tap's offset in it.
struct PaddedImage {
  std::vector<float> values;
  std::vector<int64_t> tap_offset;  // k = (ci*kh + ky)*kw + kx -> offset from a window corner
  int64_t row = 0;                  // floats per padded row

  PaddedImage(int64_t H, int64_t W, int64_t GC, int64_t Cin, int64_t kh, int64_t kw,
              int64_t pad_h, int64_t pad_w)
      : values((H + 2 * pad_h) * (W + 2 * pad_w) * GC, 0.0f), row((W + 2 * pad_w) * GC) {
    for (int64_t ci = 0; ci < Cin; ++ci)
      for (int64_t ky = 0; ky < kh; ++ky)
        for (int64_t kx = 0; kx < kw; ++kx) tap_offset.push_back(ky * row + kx * GC + ci);
  }

  void load(const float* __restrict__ x, int64_t H, int64_t W, int64_t GC, int64_t pad_h,
            int64_t pad_w) {
    for (int64_t y = 0; y < H; ++y)
      std::copy(x + y * W * GC, x + (y + 1) * W * GC, values.data() + (y + pad_h) * row + pad_w * GC);
  }
};

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

// v rounded to the nearest bfloat16 (ties to even), kept as a float: what a bf16
// convolution's output holds before the pool compares it.
inline vfloat round_bf16_v(vfloat v) {
  vint u;
  std::memcpy(&u, &v, sizeof u);
  const vint rounded = (u + 0x7FFF + ((u >> 16) & 1)) & static_cast<int32_t>(0xFFFF0000u);
  const vint keep = (v != v);  // NaN stays NaN
  const vint bits = keep ? u : rounded;
  vfloat r;
  std::memcpy(&r, &bits, sizeof r);
  return r;
}

// Window position j wins over the best so far if greater, or NaN (torch's rule).
inline void window_max_v(vfloat v, int32_t j, vfloat& best, vint& where) {
  const vint wins = (v > best) | (v != v);
  best = wins ? v : best;
  where = wins ? vint{} + j : where;
}

// One image of conv -> pool -> relu from its padded input; w: (G, K, Cp) with Cp a
// multiple of kBlock; bias: (G, Cp) or null; out, idx: (PH, PW, G*C).
BH_CLONES void conv_pool_image(const PaddedImage& img, const float* __restrict__ w,
                               const float* __restrict__ bias, float* __restrict__ out,
                               uint8_t* __restrict__ idx, int64_t G, int64_t Cin, int64_t C,
                               int64_t Cp, int64_t PH, int64_t PW, bool round_bf16) {
  const int64_t K = static_cast<int64_t>(img.tap_offset.size());
  const int64_t GC = G * Cin;
  const float* __restrict__ xp = img.values.data();
  const int64_t* __restrict__ off = img.tap_offset.data();
  for (int64_t ph = 0; ph < PH; ++ph) {
    for (int64_t pw = 0; pw < PW; ++pw) {
      for (int64_t g = 0; g < G; ++g) {
        // the window's four conv outputs: corners (2ph + dy, 2pw + dx)
        const float* x0 = xp + 2 * ph * img.row + 2 * pw * GC + g * Cin;
        const float* x1 = x0 + GC;
        const float* x2 = x0 + img.row;
        const float* x3 = x2 + GC;
        const int64_t at = ((ph * PW + pw) * G + g) * C;
        for (int64_t cb = 0; cb < C; cb += kBlock) {
          const vfloat b = bias ? load_v(bias + g * Cp + cb) : vfloat{};
          vfloat a0 = b, a1 = b, a2 = b, a3 = b;
          const float* wg = w + g * K * Cp + cb;
          for (int64_t k = 0; k < K; ++k) {
            const vfloat wk = load_v(wg + k * Cp);
            a0 += x0[off[k]] * wk;
            a1 += x1[off[k]] * wk;
            a2 += x2[off[k]] * wk;
            a3 += x3[off[k]] * wk;
          }
          if (round_bf16) {
            a0 = round_bf16_v(a0), a1 = round_bf16_v(a1), a2 = round_bf16_v(a2);
            a3 = round_bf16_v(a3);
          }
          vfloat best = a0;
          vint where{};
          window_max_v(a1, 1, best, where);
          window_max_v(a2, 2, best, where);
          window_max_v(a3, 3, best, where);
          // torch's ReLU backward passes the gradient unless the value is <= 0: NaN too
          const vint alive = (best > 0.0f) | (best != best);
          const vfloat value = alive ? best : vfloat{};
          const vint index = alive ? where : vint{} + kDead;
          const int64_t n = std::min(kBlock, C - cb);
          float values[kBlock];
          store_v(values, value);
          std::copy(values, values + n, out + at + cb);
          if (idx) {
            for (int64_t c = 0; c < n; ++c) idx[at + cb + c] = static_cast<uint8_t>(index[c]);
          }
        }
      }
    }
  }
}

// One image's contribution to the weight and bias gradients, accumulated into dw
// (G, K, Cp) and db (G, Cp).
BH_CLONES void conv_pool_image_backward(const PaddedImage& img, const float* __restrict__ grad,
                                        const uint8_t* __restrict__ idx, float* __restrict__ dw,
                                        float* __restrict__ db, int64_t G, int64_t Cin, int64_t C,
                                        int64_t Cp, int64_t PH, int64_t PW) {
  const int64_t K = static_cast<int64_t>(img.tap_offset.size());
  const int64_t GC = G * Cin;
  const float* __restrict__ xp = img.values.data();
  const int64_t* __restrict__ off = img.tap_offset.data();
  for (int64_t g = 0; g < G; ++g) {  // member-major: its dw stays in cache
    for (int64_t ph = 0; ph < PH; ++ph) {
      for (int64_t pw = 0; pw < PW; ++pw) {
        const int64_t at = ((ph * PW + pw) * G + g) * C;
        const float* x0 = xp + 2 * ph * img.row + 2 * pw * GC + g * Cin;
        const float* x1 = x0 + GC;
        const float* x2 = x0 + img.row;
        const float* x3 = x2 + GC;
        for (int64_t cb = 0; cb < C; cb += kBlock) {
          const int64_t n = std::min(kBlock, C - cb);
          float values[kBlock] = {};
          vint j = vint{} + kDead;
          std::copy(grad + at + cb, grad + at + cb + n, values);
          for (int64_t c = 0; c < n; ++c) j[c] = idx[at + cb + c];
          const vfloat v = load_v(values), zero{};
          const vint alive = j != kDead;
          float* dbg = db + g * Cp + cb;
          store_v(dbg, load_v(dbg) + (alive ? v : zero));
          bool any = false;
          for (int64_t c = 0; c < kBlock; ++c) any |= alive[c] != 0;
          if (!any) continue;  // every output of this block zeroed by the ReLU
          const vfloat g0 = j == 0 ? v : zero, g1 = j == 1 ? v : zero;
          const vfloat g2 = j == 2 ? v : zero, g3 = j == 3 ? v : zero;
          float* dwg = dw + g * K * Cp + cb;
          for (int64_t k = 0; k < K; ++k) {
            float* d = dwg + k * Cp;
            store_v(d, load_v(d) + x0[off[k]] * g0 + x1[off[k]] * g1 + x2[off[k]] * g2 +
                           x3[off[k]] * g3);
          }
        }
      }
    }
  }
}

void check_cpu_contiguous(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == dtype, name, " has the wrong dtype");
}

// x: (B, H, W, G*Cin) float; w: (G, K, Cp) float, Cp = C rounded up to kBlock;
// bias: (G, Cp) float or empty. Returns out (B, PH, PW, G*C) float and idx (same shape,
// uint8; empty unless need_idx). round_bf16: round the conv outputs to bfloat16 before the
// pool compares them, as a bf16 convolution would.
std::vector<at::Tensor> conv_relu_pool_forward(const at::Tensor& x, const at::Tensor& w,
                                               const at::Tensor& bias, int64_t cin, int64_t C,
                                               int64_t kh, int64_t kw, int64_t pad_h,
                                               int64_t pad_w, bool need_idx, bool round_bf16) {
  check_cpu_contiguous(x, "x", at::kFloat);
  check_cpu_contiguous(w, "w", at::kFloat);
  const bool has_bias = bias.numel() > 0;
  if (has_bias) check_cpu_contiguous(bias, "bias", at::kFloat);
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2);
  const int64_t G = w.size(0), Cp = w.size(2);
  TORCH_CHECK(x.size(3) == G * cin && w.size(1) == cin * kh * kw, "shapes do not match");
  TORCH_CHECK(Cp % kBlock == 0 && Cp >= C && Cp < C + kBlock, "w: channels not padded");
  const int64_t PH = (H + 2 * pad_h - kh + 1) / 2, PW = (W + 2 * pad_w - kw + 1) / 2;
  TORCH_CHECK(PH > 0 && PW > 0, "the pooled output would be empty");
  auto out = at::empty({B, PH, PW, G * C}, x.options());
  auto idx = need_idx ? at::empty({B, PH, PW, G * C}, x.options().dtype(at::kByte))
                      : at::empty({0}, x.options().dtype(at::kByte));
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  const float* bp = has_bias ? bias.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  uint8_t* ip = need_idx ? idx.data_ptr<uint8_t>() : nullptr;
  const int64_t xs = H * W * G * cin, os = PH * PW * G * C;
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    PaddedImage img(H, W, G * cin, cin, kh, kw, pad_h, pad_w);
    for (int64_t b = begin; b < end; ++b) {
      img.load(xp + b * xs, H, W, G * cin, pad_h, pad_w);
      conv_pool_image(img, wp, bp, op + b * os, ip ? ip + b * os : nullptr, G, cin, C, Cp, PH,
                      PW, round_bf16);
    }
  });
  return {out, idx};
}

// grad, idx: (B, PH, PW, G*C); x: (B, H, W, G*Cin). Returns dw (G, K, Cp) and db (G, Cp),
// zero in the padding channels.
std::vector<at::Tensor> conv_relu_pool_backward(const at::Tensor& grad, const at::Tensor& idx,
                                                const at::Tensor& x, int64_t groups,
                                                int64_t cin, int64_t Cp, int64_t kh, int64_t kw,
                                                int64_t pad_h, int64_t pad_w) {
  check_cpu_contiguous(grad, "grad", at::kFloat);
  check_cpu_contiguous(idx, "idx", at::kByte);
  check_cpu_contiguous(x, "x", at::kFloat);
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2);
  const int64_t PH = grad.size(1), PW = grad.size(2), G = groups, C = grad.size(3) / groups;
  const int64_t K = cin * kh * kw;
  TORCH_CHECK(grad.size(0) == B && idx.sizes() == grad.sizes(), "shapes do not match");
  // one accumulator per thread, summed at the end (no atomics, a fixed order per thread)
  const int64_t threads = at::get_num_threads();
  TORCH_CHECK(Cp % kBlock == 0 && Cp >= C && Cp < C + kBlock, "channels not padded");
  const int64_t per = G * K * Cp + G * Cp;
  auto partial = at::zeros({threads, per}, x.options());
  float* pp = partial.data_ptr<float>();
  const float* gp = grad.data_ptr<float>();
  const uint8_t* ip = idx.data_ptr<uint8_t>();
  const float* xp = x.data_ptr<float>();
  const int64_t xs = H * W * G * cin, gs = PH * PW * G * C;
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    float* mine = pp + at::get_thread_num() * per;
    PaddedImage img(H, W, G * cin, cin, kh, kw, pad_h, pad_w);
    for (int64_t b = begin; b < end; ++b) {
      img.load(xp + b * xs, H, W, G * cin, pad_h, pad_w);
      conv_pool_image_backward(img, gp + b * gs, ip + b * gs, mine, mine + G * K * Cp, G, cin, C,
                               Cp, PH, PW);
    }
  });
  auto total = partial.sum(0);
  return {total.narrow(0, 0, G * K * Cp).view({G, K, Cp}),
          total.narrow(0, G * K * Cp, G * Cp).view({G, Cp})};
}

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
BH_CLONES void pool_row(const Bits* __restrict__ x, Bits* __restrict__ out,
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
BH_CLONES void unpool_row(const Bits* __restrict__ grad, const uint8_t* __restrict__ idx,
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
std::vector<at::Tensor> pool_relu_forward(const at::Tensor& x, bool relu, bool need_idx) {
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
at::Tensor pool_relu_backward(const at::Tensor& grad, const at::Tensor& idx, int64_t H,
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

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("conv_relu_pool_forward", &conv_relu_pool_forward);
  m.def("conv_relu_pool_backward", &conv_relu_pool_backward);
  m.def("pool_relu_forward", &pool_relu_forward);
  m.def("pool_relu_backward", &pool_relu_backward);
}

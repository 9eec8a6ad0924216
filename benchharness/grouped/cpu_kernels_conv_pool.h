// The first conv -> ReLU -> 2x2 max-pool in one pass per image (see cpu_kernels.cpp).
#pragma once

#include "cpu_kernels_common.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>
#include <vector>

namespace bh {

// One image's input with its zero padding, (H + 2 pad_h, W + 2 pad_w, G*Cin), so that the
// taps below need no bounds checks; and each tap's offset in it.
struct PaddedImage {
  std::vector<float> values;
  std::vector<int64_t> tap_offset;  // k = (ci*kh + ky)*kw + kx -> offset from a window corner
  int64_t columns = 0;              // floats per pixel: G*Cin
  int64_t cin = 0;                  // input channels per member
  int64_t row = 0;                  // floats per padded row

  PaddedImage(int64_t H, int64_t W, int64_t G, int64_t Cin, int64_t kh, int64_t kw,
              int64_t pad_h, int64_t pad_w)
      : values((H + 2 * pad_h) * (W + 2 * pad_w) * G * Cin, 0.0f),
        columns(G * Cin),
        cin(Cin),
        row((W + 2 * pad_w) * G * Cin) {
    for (int64_t ci = 0; ci < Cin; ++ci)
      for (int64_t ky = 0; ky < kh; ++ky)
        for (int64_t kx = 0; kx < kw; ++kx) tap_offset.push_back(ky * row + kx * columns + ci);
  }

  int64_t taps() const { return static_cast<int64_t>(tap_offset.size()); }

  void load(const float* __restrict__ x, int64_t H, int64_t W, int64_t pad_h, int64_t pad_w) {
    for (int64_t y = 0; y < H; ++y)
      std::copy(x + y * W * columns, x + (y + 1) * W * columns,
                values.data() + (y + pad_h) * row + pad_w * columns);
  }

  // Member g's input at the four corners of pooling window (ph, pw), the top-left
  // (2ph, 2pw), top-right, bottom-left, bottom-right conv outputs, in torch's window order:
  // corner j's tap k is corners[j][tap_offset[k]].
  void corners(int64_t ph, int64_t pw, int64_t g, const float* (&at)[4]) const {
    at[0] = values.data() + 2 * ph * row + 2 * pw * columns + g * cin;
    at[1] = at[0] + columns;
    at[2] = at[0] + row;
    at[3] = at[2] + columns;
  }
};

// One image of conv -> pool -> relu from its padded input; w: (G, K, Cp); bias: (G, Cp) or
// null; out, idx: (PH, PW, G*C). BW divides Cp. KT > 0 fixes K (= KT) at compile time,
// so that a channel block's weights stay in registers over the whole image.
template <int BW, int KT>
void conv_pool_image(const PaddedImage& img, const float* __restrict__ w,
                               const float* __restrict__ bias, float* __restrict__ out,
                               uint8_t* __restrict__ idx, int64_t G, int64_t C,
                               int64_t Cp, int64_t PH, int64_t PW, bool round_bf16) {
  using L = Lanes<BW>;
  using vf = typename L::f;
  using vi = typename L::i;
  const int64_t K = KT > 0 ? KT : img.taps();
  const int64_t* __restrict__ off = img.tap_offset.data();
  constexpr int64_t kHeld = KT > 0 ? KT : 1;
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t cb = 0; cb < C; cb += BW) {
      const float* wg = w + g * K * Cp + cb;
      vf held[kHeld];
      if (KT > 0) {
        for (int64_t k = 0; k < kHeld; ++k) held[k] = L::load(wg + k * Cp);
      }
      const vf b = bias ? L::load(bias + g * Cp + cb) : vf{};
      const int64_t n = std::min<int64_t>(BW, C - cb);
      for (int64_t ph = 0; ph < PH; ++ph) {
        for (int64_t pw = 0; pw < PW; ++pw) {
          const float* x[4];
          img.corners(ph, pw, g, x);
          vf a0 = b, a1 = b, a2 = b, a3 = b;
          for (int64_t k = 0; k < K; ++k) {
            const vf wk = KT > 0 ? held[KT > 0 ? k : 0] : L::load(wg + k * Cp);
            const int64_t o = off[k];
            a0 += x[0][o] * wk;
            a1 += x[1][o] * wk;
            a2 += x[2][o] * wk;
            a3 += x[3][o] * wk;
          }
          if (round_bf16) {
            a0 = L::round_bf16(a0), a1 = L::round_bf16(a1), a2 = L::round_bf16(a2);
            a3 = L::round_bf16(a3);
          }
          // the window's maximum and where it is
          vf best = a0;
          vi where{};
          window_max_v(a1, 1, best, where);
          window_max_v(a2, 2, best, where);
          window_max_v(a3, 3, best, where);
          // torch's ReLU backward passes the gradient unless the value is <= 0: NaN too
          const vi alive = (best > 0.0f) | (best != best);
          const vf value = alive ? best : vf{};
          const vi index = alive ? where : vi{} + kDead;
          const int64_t at = ((ph * PW + pw) * G + g) * C + cb;
          if (n == BW) {
            L::store(out + at, value);
            if (idx) L::store_index(idx + at, index);
          } else {  // the last partial block: through copies
            float values[BW];
            uint8_t indices[BW];
            L::store(values, value);
            L::store_index(indices, index);
            std::copy(values, values + n, out + at);
            if (idx) std::copy(indices, indices + n, idx + at);
          }
        }
      }
    }
  }
}

// One image's contribution to the weight and bias gradients, accumulated into dw
// (G, K, Cp) and db (G, Cp). KT > 0: a channel block's K weight-gradient sums stay in
// registers over the whole image.
template <int BW, int KT>
void conv_pool_image_backward(const PaddedImage& img, const float* __restrict__ grad,
                                        const uint8_t* __restrict__ idx, float* __restrict__ dw,
                                        float* __restrict__ db, int64_t G, int64_t C,
                                        int64_t Cp, int64_t PH, int64_t PW) {
  using L = Lanes<BW>;
  using vf = typename L::f;
  using vi = typename L::i;
  const int64_t K = KT > 0 ? KT : img.taps();
  const int64_t* __restrict__ off = img.tap_offset.data();
  constexpr int64_t kHeld = KT > 0 ? KT : 1;
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t cb = 0; cb < C; cb += BW) {
      float* dwg = dw + g * K * Cp + cb;
      vf sums[kHeld] = {};
      vf bias_sum{};
      const int64_t n = std::min<int64_t>(BW, C - cb);
      for (int64_t ph = 0; ph < PH; ++ph) {
        for (int64_t pw = 0; pw < PW; ++pw) {
          const int64_t at = ((ph * PW + pw) * G + g) * C + cb;
          vf v;
          vi j;
          if (n == BW) {
            v = L::load(grad + at);
            j = L::load_index(idx + at);
          } else {  // the last partial block: through padded copies
            float values[BW] = {};
            uint8_t index[BW];
            std::fill(index, index + BW, kDead);
            std::copy(grad + at, grad + at + n, values);
            std::copy(idx + at, idx + at + n, index);
            v = L::load(values);
            j = L::load_index(index);
          }
          const vf zero{};
          bias_sum += j != kDead ? v : zero;
          const vf g0 = j == 0 ? v : zero, g1 = j == 1 ? v : zero;
          const vf g2 = j == 2 ? v : zero, g3 = j == 3 ? v : zero;
          const float* x[4];
          img.corners(ph, pw, g, x);
          for (int64_t k = 0; k < K; ++k) {
            const int64_t o = off[k];
            const vf term = x[0][o] * g0 + x[1][o] * g1 + x[2][o] * g2 + x[3][o] * g3;
            if (KT > 0) {
              sums[KT > 0 ? k : 0] += term;
            } else {
              L::store(dwg + k * Cp, L::load(dwg + k * Cp) + term);
            }
          }
        }
      }
      if (KT > 0) {
        for (int64_t k = 0; k < kHeld; ++k) L::store(dwg + k * Cp, L::load(dwg + k * Cp) + sums[k]);
      }
      float* dbg = db + g * Cp + cb;
      L::store(dbg, L::load(dbg) + bias_sum);
    }
  }
}

// kernel<BW, KT> for these channels and taps: 16 lanes where the padded channel count
// allows, K = 9 (a 3x3 kernel on one input channel) compiled apart, any other K generic.
template <template <int, int> class Kernel>
auto choose(int64_t Cp, int64_t K) {
  using Fn = std::remove_const_t<decltype(Kernel<8, 0>::run)>;
  const bool wide = Cp % 16 == 0;
  if (K == 9) return wide ? Fn(Kernel<16, 9>::run) : Fn(Kernel<8, 9>::run);
  return wide ? Fn(Kernel<16, 0>::run) : Fn(Kernel<8, 0>::run);
}

template <int BW, int KT>
struct Forward {
  static constexpr auto run = &conv_pool_image<BW, KT>;
};

template <int BW, int KT>
struct Backward {
  static constexpr auto run = &conv_pool_image_backward<BW, KT>;
};

// x: (B, H, W, G*Cin) float; w: (G, K, Cp) float, Cp = C rounded up to kBlock;
// bias: (G, Cp) float or empty. Returns out (B, PH, PW, G*C) float and idx (same shape,
// uint8; empty unless need_idx). round_bf16: round the conv outputs to bfloat16 before the
// pool compares them, as a bf16 convolution would.
inline std::vector<at::Tensor> conv_relu_pool_forward(const at::Tensor& x, const at::Tensor& w,
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
  const auto image = choose<Forward>(Cp, cin * kh * kw);
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    PaddedImage img(H, W, G, cin, kh, kw, pad_h, pad_w);
    for (int64_t b = begin; b < end; ++b) {
      img.load(xp + b * xs, H, W, pad_h, pad_w);
      image(img, wp, bp, op + b * os, ip ? ip + b * os : nullptr, G, C, Cp, PH, PW,
            round_bf16);
    }
  });
  return {out, idx};
}

// grad, idx: (B, PH, PW, G*C); x: (B, H, W, G*Cin). Returns dw (G, K, Cp) and db (G, Cp),
// zero in the padding channels.
inline std::vector<at::Tensor> conv_relu_pool_backward(const at::Tensor& grad, const at::Tensor& idx,
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
  const auto image = choose<Backward>(Cp, K);
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    float* mine = pp + at::get_thread_num() * per;
    PaddedImage img(H, W, G, cin, kh, kw, pad_h, pad_w);
    for (int64_t b = begin; b < end; ++b) {
      img.load(xp + b * xs, H, W, pad_h, pad_w);
      image(img, gp + b * gs, ip + b * gs, mine, mine + G * K * Cp, G, C, Cp, PH, PW);
    }
  });
  auto total = partial.sum(0);
  return {total.narrow(0, 0, G * K * Cp).view({G, K, Cp}),
          total.narrow(0, G * K * Cp, G * Cp).view({G, Cp})};
}

}  // namespace bh

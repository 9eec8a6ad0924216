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

// The kernels live in cpu_kernels_*.h, compiled here as one translation unit (torch/extension.h
// is slow to compile: one inclusion keeps the first build at ~30 s).

#include <torch/extension.h>

#include "cpu_kernels_conv_pool.h"
#include "cpu_kernels_pool.h"


PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("conv_relu_pool_forward", &bh::conv_relu_pool_forward);
  m.def("conv_relu_pool_backward", &bh::conv_relu_pool_backward);
  m.def("pool_relu_forward", &bh::pool_relu_forward);
  m.def("pool_relu_backward", &bh::pool_relu_backward);
}

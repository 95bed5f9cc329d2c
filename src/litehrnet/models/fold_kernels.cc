// Eval-mode kernels of the folded path (BatchNorm folded into the convolution before it, see fold.py):
// a per-channel bias with the activation after it in one pass (also with a residual input added before
// the ReLU), and the depthwise 3x3 convolution with that epilogue applied to each output plane while it
// is still in cache. No backward: the folded path
// only runs in eval mode.
//
// kernel_build.py compiles this file in ONE translation unit after fast_kernels.cc (it appends this
// text to that source), so the worker pool (parallel_for), the depthwise plane helpers (pad_plane,
// conv_s1, split_plane, conv_s2, TwoPlanes, planes_of), is_f32, same4 and LITEHRNET_EXPORT are the
// ones defined there.

#include <cmath>

namespace {

enum Activation { kIdentity = 0, kRelu = 1, kSigmoid = 2 };

// y[0..n) = act(y + b), in place
template <int ACT>
inline void bias_act_run(float *__restrict y, int64_t n, float b) {
  for (int64_t t = 0; t < n; ++t) {
    const float v = y[t] + b;
    if (ACT == kRelu) {
      y[t] = v > 0.f ? v : 0.f;
    } else if (ACT == kSigmoid) {
      y[t] = 1.f / (1.f + std::exp(-v));
    } else {
      y[t] = v;
    }
  }
}

// inputs: y (N,C,...), b (C); output act(y + b[c]) of y's shape (the rest of the dims flattened)
template <int ACT>
int bias_act(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 3 || ndims[0] < 2 || ndims[1] != 1 || !is_f32(dtypes[0]) || !is_f32(dtypes[1])) return 1;
  const int64_t N = shapes[0][0], C = shapes[0][1];
  int64_t L = 1;
  for (int d = 2; d < ndims[0]; ++d) L *= shapes[0][d];
  if (shapes[1][0] != C || ndims[2] != ndims[0]) return 2;
  const float *y = static_cast<const float *>(params[0]);
  const float *b = static_cast<const float *>(params[1]);
  float *out = static_cast<float *>(params[2]);
  parallel_for(N * C, N * C * L * (ACT == kSigmoid ? 8 : 1), [&](int64_t lo, int64_t hi) {
    for (int64_t nc = lo; nc < hi; ++nc) {
      if (out != y) std::memcpy(out + nc * L, y + nc * L, sizeof(float) * L);
      bias_act_run<ACT>(out + nc * L, L, b[nc % C]);
    }
  });
  return 0;
}

// inputs: y (N,C,...), b (C), r (y's shape); output relu(y + b[c] + r): a residual block's end
int bias_residual_relu(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 4 || ndims[0] < 2 || ndims[1] != 1 || ndims[2] != ndims[0] || ndims[3] != ndims[0] ||
      !is_f32(dtypes[0]) || !is_f32(dtypes[1]) || !is_f32(dtypes[2]))
    return 1;
  const int64_t N = shapes[0][0], C = shapes[0][1];
  int64_t L = 1;
  for (int d = 2; d < ndims[0]; ++d) L *= shapes[0][d];
  for (int d = 0; d < ndims[0]; ++d)
    if (shapes[2][d] != shapes[0][d]) return 2;
  if (shapes[1][0] != C) return 2;
  const float *y = static_cast<const float *>(params[0]);
  const float *b = static_cast<const float *>(params[1]);
  const float *r = static_cast<const float *>(params[2]);
  float *out = static_cast<float *>(params[3]);
  parallel_for(N * C, N * C * L, [&](int64_t lo, int64_t hi) {
    for (int64_t nc = lo; nc < hi; ++nc) {
      const float bias = b[nc % C];
      const float *__restrict yp = y + nc * L, *__restrict rp = r + nc * L;
      float *__restrict op = out + nc * L;
      for (int64_t t = 0; t < L; ++t) {
        const float v = yp[t] + bias + rp[t];
        op[t] = v > 0.f ? v : 0.f;
      }
    }
  });
  return 0;
}

// inputs: x (N,C,H,W), w (C,1,3,3), b (C); output act(depthwise(x, w) + b[c]) (N,C,Ho,Wo)
template <int S, int ACT>
int dw_bias_act(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 4 || ndims[0] != 4 || ndims[2] != 1 || !is_f32(dtypes[0]) || !is_f32(dtypes[1]) ||
      !is_f32(dtypes[2]))
    return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const float *bias = static_cast<const float *>(params[2]);
  float *y = static_cast<float *>(params[3]);
  const Planes d = planes_of<S>(shapes[0]);
  const int64_t N = d.N, C = d.C, H = d.H, W = d.W, Ho = d.Ho, Wo = d.Wo;
  if (!same4(ndims[1], shapes[1], C, 1, 3, 3) || shapes[2][0] != C || !same4(ndims[3], shapes[3], N, C, Ho, Wo))
    return 2;
  parallel_for(N * C, N * C * Ho * Wo * 9, [&](int64_t lo, int64_t hi) {
    TwoPlanes planes(H, W);
    for (int64_t nc = lo; nc < hi; ++nc) {
      const float *k = w + (nc % C) * 9;
      float *plane = y + nc * Ho * Wo;
      if (S == 1) {
        pad_plane(x + nc * H * W, H, W, planes.p);
        conv_s1(planes.p, H, W, k, plane, planes.q);
      } else {
        split_plane(x + nc * H * W, H, W, Wo, planes.p, planes.q);
        conv_s2(planes.p, planes.q, Ho, Wo, k, plane);
      }
      bias_act_run<ACT>(plane, Ho * Wo, bias[nc % C]);
    }
  });
  return 0;
}

}  // namespace

LITEHRNET_EXPORT(BiasRelu, bias_act<kRelu>)
LITEHRNET_EXPORT(BiasSigmoid, bias_act<kSigmoid>)
LITEHRNET_EXPORT(BiasResidualRelu, bias_residual_relu)
LITEHRNET_EXPORT(DwBiasS1, (dw_bias_act<1, kIdentity>))
LITEHRNET_EXPORT(DwBiasS2, (dw_bias_act<2, kIdentity>))
LITEHRNET_EXPORT(DwBiasReluS1, (dw_bias_act<1, kRelu>))
LITEHRNET_EXPORT(DwBiasReluS2, (dw_bias_act<2, kRelu>))

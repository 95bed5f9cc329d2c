"""Fast CPU 3x3 convolutions with the parameters of ``nn.Conv2d`` (the 'fast' conv implementation).

MindSpore 2.10 on CPU runs every 3x3 ``nn.Conv2d`` (depthwise or dense, any padding mode, GRAPH or
PYNATIVE) through oneDNN's reference kernel, which dominates Lite-HRNet's run time. ``fast_conv2d``
returns drop-in cells that compute exactly the same function, own the same ``weight`` (and ``bias``)
Parameters with the same shapes and initialisation, and support autodiff:

* ``aot`` backend (default when it builds): small C++ kernels, compiled at run time with g++ from the
  source below into a per-user cache and run as ``ops.Custom(func_type="aot")`` operators with their
  own backward kernels. Depthwise 3x3 (stride 1 or 2) is computed directly; a dense 3x3 conv (the
  stem) is im2col (C++) followed by a MatMul. The library is checked against numpy with ctypes
  before it is used; when g++ is missing, the build or the check fails, or
  ``LITEHRNET_FAST_CONV_BACKEND=matmul`` is set, the ``matmul`` backend is used instead.
* ``matmul`` backend (pure MindSpore ops, no compiler): the 3x3 window is gathered with fixed 0/1
  shift/selection matrices built with numpy from the static input shape, and the weight enters through
  a banded matrix built in the graph, so gradients reach it: depthwise
  ``Y = sum_di (S_di @ X) @ B_di`` and dense ``Y = Wmat @ im2col(X)``, im2col = ``S @ X @ T``.

1x1 convolutions (already a fast MatMul in MindSpore) and any other kernel size or grouping return
``None`` so that ``layers.conv2d`` keeps ``nn.Conv2d``. Float32 is computed natively by the kernels;
other dtypes are cast to float32 and back.

Environment: ``LITEHRNET_FAST_CONV_BACKEND`` = ``auto`` (default) | ``aot`` | ``matmul``;
``LITEHRNET_FAST_CONV_CACHE`` = directory for the compiled library (default
``~/.cache/litehrnet_mindspore``, else the temp directory); ``LITEHRNET_CONV_THREADS`` = threads the
C++ kernels may use (default: the CPUs this process may run on).

The Custom operators cannot be exported (MindIR/ONNX); export with the 'native' implementation, whose
checkpoints are interchangeable with these cells'.
"""
import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore import dtype as mstype
from mindspore.common.initializer import Normal, initializer

_LOG = logging.getLogger(__name__)

BACKENDS = ("auto", "aot", "matmul")
_BACKEND_ENV = "LITEHRNET_FAST_CONV_BACKEND"
_CACHE_ENV = "LITEHRNET_FAST_CONV_CACHE"

# The kernels, compiled at run time (see kernel_library()).
_CPP_SOURCE = r"""
// 3x3 convolution kernels (padding 1, stride 1 or 2, float32, NCHW) for MindSpore's CPU
// Custom(func_type="aot") operators. Depthwise: forward, input gradient, weight gradient.
// Dense: im2col and its adjoint col2im (a MatMul does the rest).
// Every entry point has the Custom-aot signature and returns 0 on success.
#include <sched.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace {

// Denormal inputs or products (deep stacks of small weights, tiny gradients) slow x86 arithmetic down
// by orders of magnitude; flush them to zero while a kernel runs, then restore the caller's mode.
struct FlushDenormals {
#if defined(__x86_64__) || defined(__i386__)
  unsigned int saved = _mm_getcsr();
  FlushDenormals() { _mm_setcsr(saved | 0x8040u); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

int max_threads() {
  static const int n = [] {
    int count = 0;
    if (const char *env = std::getenv("LITEHRNET_CONV_THREADS")) count = std::atoi(env);
    if (count <= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      if (sched_getaffinity(0, sizeof(set), &set) == 0) count = CPU_COUNT(&set);
    }
    if (count <= 0) count = (int)std::thread::hardware_concurrency();
    return std::max(1, std::min(count, 64));
  }();
  return n;
}

// Split [0, items) over threads; small jobs (under ~1e5 multiply-adds per thread) stay on this thread.
template <class F>
void parallel_for(int64_t items, int64_t work, F f) {
  const int64_t nt = std::min<int64_t>({(int64_t)max_threads(), std::max<int64_t>(1, work / 100000), items});
  FlushDenormals flush;
  if (nt <= 1) {
    f(0, items);
    return;
  }
  const int64_t chunk = (items + nt - 1) / nt;
  std::vector<std::thread> ts;
  try {
    for (int64_t b = chunk; b < items; b += chunk) {
      const int64_t e = std::min(items, b + chunk);
      ts.emplace_back([=, &f] {
        FlushDenormals thread_flush;
        f(b, e);
      });
    }
  } catch (...) {  // a thread could not be started: run the chunks not handed out here
    for (int64_t b = chunk * (int64_t)(ts.size() + 1); b < items; b += chunk) f(b, std::min(items, b + chunk));
  }
  f(0, std::min(items, chunk));
  for (auto &t : ts) t.join();
}

inline bool is_f32(const char *d) { return std::strcmp(d, "float32") == 0 || std::strcmp(d, "float") == 0; }

inline bool same4(int nd, const int64_t *s, int64_t a, int64_t b, int64_t c, int64_t d) {
  return nd == 4 && s[0] == a && s[1] == b && s[2] == c && s[3] == d;
}

// ---- stride 1: planes zero-padded to (H+2) x (W+2) -------------------------------------------

inline void pad_plane(const float *x, int64_t H, int64_t W, float *p) {
  const int64_t Wp = W + 2;
  std::memset(p, 0, sizeof(float) * Wp);
  std::memset(p + (H + 1) * Wp, 0, sizeof(float) * Wp);
  for (int64_t r = 0; r < H; ++r) {
    float *row = p + (r + 1) * Wp;
    row[0] = 0.f;
    std::memcpy(row + 1, x + r * W, sizeof(float) * W);
    row[W + 1] = 0.f;
  }
}

// out[j] = sum_t k[t] * p[j + (t / 3) * Wp + t % 3] for j < len
inline void taps9(const float *__restrict p, int64_t Wp, const float *k, float *__restrict out, int64_t len) {
  const float k0 = k[0], k1 = k[1], k2 = k[2], k3 = k[3], k4 = k[4], k5 = k[5], k6 = k[6], k7 = k[7], k8 = k[8];
  const float *a = p, *b = p + Wp, *c = p + 2 * Wp;
  for (int64_t j = 0; j < len; ++j)
    out[j] = k0 * a[j] + k1 * a[j + 1] + k2 * a[j + 2] + k3 * b[j] + k4 * b[j + 1] + k5 * b[j + 2] + k6 * c[j] +
             k7 * c[j + 1] + k8 * c[j + 2];
}

// 3x3 stride-1 correlation of a padded (H+2)x(W+2) plane into an HxW plane. Narrow planes run as one
// long loop over the padded row pitch (ext holds (H-1)*(W+2)+W values) and are compacted afterwards.
inline void conv_s1(const float *p, int64_t H, int64_t W, const float *k, float *y, float *ext) {
  const int64_t Wp = W + 2;
  if (W >= 32) {
    for (int64_t i = 0; i < H; ++i) taps9(p + i * Wp, Wp, k, y + i * W, W);
    return;
  }
  taps9(p, Wp, k, ext, (H - 1) * Wp + W);
  for (int64_t i = 0; i < H; ++i) std::memcpy(y + i * W, ext + i * Wp, sizeof(float) * W);
}

// ---- stride 2: padded planes split into even and odd padded columns ----------------------------
// E[r][m] = xpad[r][2m] (m <= Wo), O[r][m] = xpad[r][2m+1] (m < Wo), r < H+2; xpad as in pad_plane.

inline void split_plane(const float *x, int64_t H, int64_t W, int64_t Wo, float *E, float *O) {
  const int64_t We = Wo + 1;
  std::memset(E, 0, sizeof(float) * (H + 2) * We);
  std::memset(O, 0, sizeof(float) * (H + 2) * Wo);
  for (int64_t r = 0; r < H; ++r) {
    const float *xr = x + r * W;
    float *er = E + (r + 1) * We, *orow = O + (r + 1) * Wo;
    const int64_t half = W / 2;  // pairs (x[2m], x[2m+1]) -> (O[m], E[m+1])
    for (int64_t m = 0; m < half; ++m) {
      orow[m] = xr[2 * m];
      er[m + 1] = xr[2 * m + 1];
    }
    if (W % 2) orow[half] = xr[W - 1];
  }
}

// inverse of split_plane's interior: x[r][c] = (c odd ? E[r+1][(c+1)/2] : O[r+1][c/2])
inline void merge_plane(const float *E, const float *O, int64_t H, int64_t W, int64_t Wo, float *x) {
  const int64_t We = Wo + 1;
  for (int64_t r = 0; r < H; ++r) {
    const float *er = E + (r + 1) * We, *orow = O + (r + 1) * Wo;
    float *xr = x + r * W;
    for (int64_t m = 1; 2 * m - 1 < W; ++m) xr[2 * m - 1] = er[m];
    for (int64_t m = 0; 2 * m < W; ++m) xr[2 * m] = orow[m];
  }
}

inline void conv_s2(const float *E, const float *O, int64_t Ho, int64_t Wo, const float *k, float *y) {
  const int64_t We = Wo + 1;
  for (int64_t i = 0; i < Ho; ++i) {
    const float *e0 = E + 2 * i * We, *e1 = e0 + We, *e2 = e1 + We;
    const float *o0 = O + 2 * i * Wo, *o1 = o0 + Wo, *o2 = o1 + Wo;
    float *__restrict yr = y + i * Wo;
    for (int64_t j = 0; j < Wo; ++j)
      yr[j] = k[0] * e0[j] + k[1] * o0[j] + k[2] * e0[j + 1] + k[3] * e1[j] + k[4] * o1[j] + k[5] * e1[j + 1] +
              k[6] * e2[j] + k[7] * o2[j] + k[8] * e2[j + 1];
  }
}

// ---- depthwise ---------------------------------------------------------------------------------

// inputs: x (N,C,H,W), w (C,1,3,3); output y (N,C,Ho,Wo)
template <int S>
int dw_forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 3 || ndims[0] != 4 || !is_f32(dtypes[0]) || !is_f32(dtypes[1])) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  float *y = static_cast<float *>(params[2]);
  const int64_t N = shapes[0][0], C = shapes[0][1], H = shapes[0][2], W = shapes[0][3];
  const int64_t Ho = (H - 1) / S + 1, Wo = (W - 1) / S + 1;
  if (!same4(ndims[1], shapes[1], C, 1, 3, 3) || !same4(ndims[2], shapes[2], N, C, Ho, Wo)) return 2;
  parallel_for(N * C, N * C * Ho * Wo * 9, [&](int64_t b, int64_t e) {
    std::vector<float> buf(2 * (H + 2) * (W + 3));
    float *p = buf.data(), *q = p + (H + 2) * (W + 3);
    for (int64_t nc = b; nc < e; ++nc) {
      const float *k = w + (nc % C) * 9;
      if (S == 1) {
        pad_plane(x + nc * H * W, H, W, p);
        conv_s1(p, H, W, k, y + nc * H * W, q);
      } else {
        split_plane(x + nc * H * W, H, W, Wo, p, q);
        conv_s2(p, q, Ho, Wo, k, y + nc * Ho * Wo);
      }
    }
  });
  return 0;
}

// inputs: dy (N,C,Ho,Wo), w (C,1,3,3), x (N,C,H,W) (its shape only); output dx (N,C,H,W)
// dx = stride-1 correlation with the flipped kernel of dy, zero-inserted (stride 2) and padded.
template <int S>
int dw_grad_input(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 4 || ndims[3] != 4 || !is_f32(dtypes[0]) || !is_f32(dtypes[1])) return 1;
  const float *dy = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  float *dx = static_cast<float *>(params[3]);
  const int64_t N = shapes[3][0], C = shapes[3][1], H = shapes[3][2], W = shapes[3][3];
  const int64_t Ho = (H - 1) / S + 1, Wo = (W - 1) / S + 1, Wp = W + 2;
  if (!same4(ndims[0], shapes[0], N, C, Ho, Wo) || !same4(ndims[1], shapes[1], C, 1, 3, 3)) return 2;
  parallel_for(N * C, N * C * H * W * 9, [&](int64_t b, int64_t e) {
    std::vector<float> buf(2 * (H + 2) * Wp);
    float *p = buf.data(), *q = p + (H + 2) * Wp;
    if (S == 2) std::fill(p, q, 0.f);
    for (int64_t nc = b; nc < e; ++nc) {
      const float *k = w + (nc % C) * 9;
      const float kf[9] = {k[8], k[7], k[6], k[5], k[4], k[3], k[2], k[1], k[0]};
      const float *g = dy + nc * Ho * Wo;
      if (S == 1) {
        pad_plane(g, H, W, p);
      } else {  // p[2i+1][2j+1] = g[i][j]; the other entries stay zero
        for (int64_t i = 0; i < Ho; ++i) {
          float *row = p + (2 * i + 1) * Wp + 1;
          for (int64_t j = 0; j < Wo; ++j) row[2 * j] = g[i * Wo + j];
        }
      }
      conv_s1(p, H, W, kf, dx + nc * H * W, q);
    }
  });
  return 0;
}

// inputs: x (N,C,H,W), dy (N,C,Ho,Wo); output dw (C,1,3,3)
template <int S>
int dw_grad_weight(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 3 || ndims[0] != 4 || !is_f32(dtypes[0]) || !is_f32(dtypes[1])) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *dy = static_cast<const float *>(params[1]);
  float *dw = static_cast<float *>(params[2]);
  const int64_t N = shapes[0][0], C = shapes[0][1], H = shapes[0][2], W = shapes[0][3];
  const int64_t Ho = (H - 1) / S + 1, Wo = (W - 1) / S + 1, Wp = W + 2;
  if (!same4(ndims[1], shapes[1], N, C, Ho, Wo) || !same4(ndims[2], shapes[2], C, 1, 3, 3)) return 2;
  parallel_for(C, N * C * Ho * Wo * 9, [&](int64_t b, int64_t e) {
    constexpr int B = 16;  // independent partial sums per tap (vectorisable without -ffast-math)
    std::vector<float> buf(2 * (H + 2) * (W + 3) + B);
    float *p = buf.data(), *q = p + (H + 2) * (W + 3);
    std::vector<float> acc(S == 1 ? 0 : 9 * Wo);
    for (int64_t c = b; c < e; ++c) {
      double total[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t n = 0; n < N; ++n) {
        const float *xp = x + (n * C + c) * H * W, *g = dy + (n * C + c) * Ho * Wo;
        if (S == 1) {  // one long loop over the padded row pitch; q holds dy at that pitch, zero-filled
          pad_plane(xp, H, W, p);
          const int64_t L = (H - 1) * Wp + W;
          for (int64_t i = 0; i < H; ++i) {
            std::memcpy(q + i * Wp, g + i * W, sizeof(float) * W);
            if (i + 1 < H) q[i * Wp + W] = q[i * Wp + W + 1] = 0.f;
          }
          float a[9][B] = {};
          int64_t idx = 0;
          for (; idx + B <= L; idx += B) {
            const float *gq = q + idx;
            for (int t = 0; t < 9; ++t) {
              const float *src = p + idx + (t / 3) * Wp + t % 3;
              for (int l = 0; l < B; ++l) a[t][l] += gq[l] * src[l];
            }
          }
          for (; idx < L; ++idx)
            for (int t = 0; t < 9; ++t) a[t][0] += q[idx] * p[idx + (t / 3) * Wp + t % 3];
          for (int t = 0; t < 9; ++t)
            for (int l = 0; l < B; ++l) total[t] += a[t][l];
        } else {
          split_plane(xp, H, W, Wo, p, q);
          std::fill(acc.begin(), acc.end(), 0.f);
          const int64_t We = Wo + 1;
          for (int64_t i = 0; i < Ho; ++i) {
            const float *gr = g + i * Wo;
            for (int di = 0; di < 3; ++di) {
              const float *er = p + (2 * i + di) * We, *orow = q + (2 * i + di) * Wo;
              float *a0 = acc.data() + (di * 3) * Wo, *a1 = a0 + Wo, *a2 = a1 + Wo;
              for (int64_t j = 0; j < Wo; ++j) {
                a0[j] += gr[j] * er[j];
                a1[j] += gr[j] * orow[j];
                a2[j] += gr[j] * er[j + 1];
              }
            }
          }
          for (int t = 0; t < 9; ++t)
            for (int64_t j = 0; j < Wo; ++j) total[t] += acc[t * Wo + j];
        }
      }
      for (int t = 0; t < 9; ++t) dw[c * 9 + t] = (float)total[t];
    }
  });
  return 0;
}

// ---- dense: im2col / col2im --------------------------------------------------------------------

// inputs: x (N,C,H,W); output cols (N, C*9, Ho*Wo), row c*9 + di*3 + dj (the weight's (C,3,3) order)
template <int S>
int im2col(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 2 || ndims[0] != 4 || !is_f32(dtypes[0])) return 1;
  const float *x = static_cast<const float *>(params[0]);
  float *cols = static_cast<float *>(params[1]);
  const int64_t N = shapes[0][0], C = shapes[0][1], H = shapes[0][2], W = shapes[0][3];
  const int64_t Ho = (H - 1) / S + 1, Wo = (W - 1) / S + 1, P = Ho * Wo, Wp = W + 2;
  if (ndims[1] != 3 || shapes[1][0] != N || shapes[1][1] != C * 9 || shapes[1][2] != P) return 2;
  parallel_for(N * C, N * C * P * 9, [&](int64_t b, int64_t e) {
    std::vector<float> buf(2 * (H + 2) * (W + 3));
    float *p = buf.data(), *q = p + (H + 2) * (W + 3);
    for (int64_t nc = b; nc < e; ++nc) {
      if (S == 1) pad_plane(x + nc * H * W, H, W, p);
      else split_plane(x + nc * H * W, H, W, Wo, p, q);
      float *o = cols + nc * 9 * P;
      for (int t = 0; t < 9; ++t) {
        const int di = t / 3, dj = t % 3;
        for (int64_t i = 0; i < Ho; ++i) {
          const float *src = S == 1 ? p + (i + di) * Wp + dj
                                    : (dj == 1 ? q + (2 * i + di) * Wo : p + (2 * i + di) * (Wo + 1) + dj / 2);
          std::memcpy(o + t * P + i * Wo, src, sizeof(float) * Wo);
        }
      }
    }
  });
  return 0;
}

// inputs: dcols (N, C*9, Ho*Wo), x (N,C,H,W) (its shape only); output dx (N,C,H,W)
template <int S>
int col2im(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 3 || ndims[1] != 4 || !is_f32(dtypes[0])) return 1;
  const float *g = static_cast<const float *>(params[0]);
  float *dx = static_cast<float *>(params[2]);
  const int64_t N = shapes[1][0], C = shapes[1][1], H = shapes[1][2], W = shapes[1][3];
  const int64_t Ho = (H - 1) / S + 1, Wo = (W - 1) / S + 1, P = Ho * Wo, Wp = W + 2;
  if (ndims[0] != 3 || shapes[0][0] != N || shapes[0][1] != C * 9 || shapes[0][2] != P) return 2;
  if (!same4(ndims[2], shapes[2], N, C, H, W)) return 2;
  parallel_for(N * C, N * C * P * 9, [&](int64_t b, int64_t e) {
    std::vector<float> buf(2 * (H + 2) * (W + 3));
    float *p = buf.data(), *q = p + (H + 2) * (W + 3);
    for (int64_t nc = b; nc < e; ++nc) {
      std::fill(buf.begin(), buf.end(), 0.f);
      const float *gc = g + nc * 9 * P;
      for (int t = 0; t < 9; ++t) {
        const int di = t / 3, dj = t % 3;
        for (int64_t i = 0; i < Ho; ++i) {
          float *dst = S == 1 ? p + (i + di) * Wp + dj
                              : (dj == 1 ? q + (2 * i + di) * Wo : p + (2 * i + di) * (Wo + 1) + dj / 2);
          const float *src = gc + t * P + i * Wo;
          for (int64_t j = 0; j < Wo; ++j) dst[j] += src[j];
        }
      }
      float *o = dx + nc * H * W;
      if (S == 1) {
        for (int64_t r = 0; r < H; ++r) std::memcpy(o + r * W, p + (r + 1) * Wp + 1, sizeof(float) * W);
      } else {
        merge_plane(p, q, H, W, Wo, o);
      }
    }
  });
  return 0;
}

}  // namespace

#define LITEHRNET_EXPORT(name, impl)                                                                     \
  extern "C" int name(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,     \
                      void *, void *) {                                                                  \
    try {                                                                                                \
      return impl(nparam, params, ndims, shapes, dtypes);                                                \
    } catch (...) {                                                                                      \
      return 3;                                                                                          \
    }                                                                                                    \
  }
LITEHRNET_EXPORT(DwFwdS1, dw_forward<1>)
LITEHRNET_EXPORT(DwFwdS2, dw_forward<2>)
LITEHRNET_EXPORT(DwBwdInputS1, dw_grad_input<1>)
LITEHRNET_EXPORT(DwBwdInputS2, dw_grad_input<2>)
LITEHRNET_EXPORT(DwBwdWeightS1, dw_grad_weight<1>)
LITEHRNET_EXPORT(DwBwdWeightS2, dw_grad_weight<2>)
LITEHRNET_EXPORT(Im2ColS1, im2col<1>)
LITEHRNET_EXPORT(Im2ColS2, im2col<2>)
LITEHRNET_EXPORT(Col2ImS1, col2im<1>)
LITEHRNET_EXPORT(Col2ImS2, col2im<2>)
"""


# ----------------------------------------------------------------------------------------------
# Building and checking the kernel library
# ----------------------------------------------------------------------------------------------

_KERNEL_NAMES = tuple(f"{op}S{s}" for op in ("DwFwd", "DwBwdInput", "DwBwdWeight", "Im2Col", "Col2Im")
                      for s in (1, 2))
_CXX_FLAG_SETS = (("-O3", "-march=native"), ("-O3",))
_library = {}
_library_lock = threading.Lock()


def _cpu_signature():
    """What -march=native depends on, so a shared cache never hands a library to another CPU."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor() + platform.machine()


def _cache_dirs():
    """Candidate directories for the library, most specific first."""
    if os.environ.get(_CACHE_ENV):
        yield os.environ[_CACHE_ENV]
    if os.environ.get("MS_CUSTOM_AOT_WHITE_LIST"):  # MindSpore only loads Custom libraries from below it
        yield os.path.join(os.environ["MS_CUSTOM_AOT_WHITE_LIST"], "litehrnet_mindspore")
    home = os.path.expanduser("~")
    if home != "~":
        yield os.path.join(home, ".cache", "litehrnet_mindspore")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    yield os.path.join(tempfile.gettempdir(), f"litehrnet_mindspore_{uid}")


class _CompileError(RuntimeError):
    """The compiler rejected the source with the given flags."""


def _compile(cxx, flags, path):
    """Compile into a private temporary name, then rename: concurrent builders never see half a file."""
    tag = f"{os.getpid()}_{threading.get_ident()}"
    src, tmp = f"{path}.{tag}.cc", f"{path}.{tag}.tmp"
    try:
        with open(src, "w", encoding="utf-8") as f:
            f.write(_CPP_SOURCE)
        cmd = [cxx, *flags, "-std=c++17", "-shared", "-fPIC", "-pthread", "-o", tmp, src]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            raise _CompileError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-1000:]}")
        os.replace(tmp, path)
    finally:
        for leftover in (src, tmp):
            if os.path.exists(leftover):
                os.remove(leftover)


def _call_kernel(lib, name, inputs, out_shape):
    """Run one kernel through the Custom-op calling convention with numpy arrays (for the self-check)."""
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in inputs] + [np.full(out_shape, np.nan, np.float32)]
    n = len(arrays)
    i64p = ctypes.POINTER(ctypes.c_int64)
    shape_bufs = [(ctypes.c_int64 * a.ndim)(*a.shape) for a in arrays]
    fn = getattr(lib, name)
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int),
                   ctypes.POINTER(i64p), ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p, ctypes.c_void_p]
    status = fn(n, (ctypes.c_void_p * n)(*[a.ctypes.data for a in arrays]),
                (ctypes.c_int * n)(*[a.ndim for a in arrays]),
                (i64p * n)(*[ctypes.cast(s, i64p) for s in shape_bufs]),
                (ctypes.c_char_p * n)(*([b"float32"] * n)), None, None)
    if status != 0:
        raise RuntimeError(f"{name} returned {status}")
    return arrays[-1]


def _windows(x, stride):
    """numpy reference: the 9 strided 3x3 taps of x padded by 1, as a (.., 3, 3, Ho, Wo) view list."""
    h, w = x.shape[-2:]
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    xp = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)])
    return [[xp[..., di:di + stride * (ho - 1) + 1:stride, dj:dj + stride * (wo - 1) + 1:stride] for dj in range(3)]
            for di in range(3)], xp.shape


def _self_check(path):
    """Compare every kernel with numpy on a few shapes (odd/even, both strides, multi-threaded sizes)."""
    lib = ctypes.CDLL(path)
    missing = [name for name in _KERNEL_NAMES if not hasattr(lib, name)]
    if missing:
        raise RuntimeError(f"kernels missing from the library: {missing}")
    rng = np.random.default_rng(0)
    for (n, c, h, w) in ((2, 3, 5, 6), (1, 2, 1, 1), (2, 8, 40, 37)):
        for s in (1, 2):
            x = rng.standard_normal((n, c, h, w)).astype(np.float32)
            k = rng.standard_normal((c, 1, 3, 3)).astype(np.float32)
            taps, pshape = _windows(x.astype(np.float64), s)
            ho, wo = taps[0][0].shape[-2:]
            g = rng.standard_normal((n, c, ho, wo)).astype(np.float32)
            y = sum(k[None, :, 0, di, dj, None, None] * taps[di][dj] for di in range(3) for dj in range(3))
            gp = np.zeros(pshape)
            for di in range(3):
                for dj in range(3):
                    tap = (..., slice(di, di + s * (ho - 1) + 1, s), slice(dj, dj + s * (wo - 1) + 1, s))
                    gp[tap] += k[None, :, 0, di, dj, None, None] * g
            dx = gp[..., 1:h + 1, 1:w + 1]
            dk = np.array([[(g * taps[di][dj]).sum(axis=(0, 2, 3)) for dj in range(3)] for di in range(3)])
            dk = dk.transpose(2, 0, 1)[:, None]
            cols = np.stack([taps[di][dj] for di in range(3) for dj in range(3)], axis=2).reshape(n, c * 9, ho * wo)
            gcols = rng.standard_normal(cols.shape).astype(np.float32)
            gp = np.zeros(pshape)
            g9 = gcols.reshape(n, c, 3, 3, ho, wo)
            for di in range(3):
                for dj in range(3):
                    gp[..., di:di + s * (ho - 1) + 1:s, dj:dj + s * (wo - 1) + 1:s] += g9[:, :, di, dj]
            checks = (
                (f"DwFwdS{s}", (x, k), y),
                (f"DwBwdInputS{s}", (g, k, x), dx),
                (f"DwBwdWeightS{s}", (x, g), dk),
                (f"Im2ColS{s}", (x,), cols),
                (f"Col2ImS{s}", (gcols, x), gp[..., 1:h + 1, 1:w + 1]),
            )
            for name, inputs, ref in checks:
                out = _call_kernel(lib, name, inputs, ref.shape)
                if not np.allclose(out, ref, rtol=1e-4, atol=1e-4 * (1.0 + np.abs(ref).max())):
                    raise RuntimeError(f"{name} disagrees with numpy on {(n, c, h, w)}")


def kernel_library():
    """Path of the compiled and checked kernel library, or None (with the reason logged) if unavailable."""
    with _library_lock:
        if "path" not in _library:
            _library["path"], _library["error"] = _build_library()
            if _library["path"] is None:
                _LOG.warning("fast_conv: C++ kernels unavailable (%s); using the matmul formulation",
                             _library["error"])
        return _library["path"]


def _build_library():
    """(path, None) for a compiled library that passed the self-check, else (None, the reasons)."""
    if platform.system() != "Linux":
        return None, "MindSpore Custom aot operators need Linux"
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        return None, "no C++ compiler (g++) found"
    white_list = os.environ.get("MS_CUSTOM_AOT_WHITE_LIST")
    errors = []
    for flags in _CXX_FLAG_SETS:
        key = hashlib.sha256("\0".join([_CPP_SOURCE, cxx, *flags, _cpu_signature()]).encode()).hexdigest()[:16]
        for directory in _cache_dirs():
            path = os.path.join(os.path.abspath(directory), f"fast_conv_{key}.so")
            if white_list and os.path.commonpath([os.path.realpath(path), os.path.realpath(white_list)]) \
                    != os.path.realpath(white_list):
                errors.append(f"{path} is outside MS_CUSTOM_AOT_WHITE_LIST")
                continue
            try:
                if not os.path.exists(path):
                    os.makedirs(directory, exist_ok=True)
                    _compile(cxx, flags, path)
                _self_check(path)
                return path, None
            except _CompileError as exc:
                errors.append(str(exc))
                break  # these flags are rejected: try the next set, not another directory
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                errors.append(f"{path}: {exc}")
    return None, "; ".join(errors)


def _resolve_backend(backend=None):
    backend = backend or os.environ.get(_BACKEND_ENV, "auto").strip().lower() or "auto"
    if backend not in BACKENDS:
        raise ValueError(f"fast conv backend must be one of {BACKENDS}, got '{backend}'")
    if backend == "matmul":
        return "matmul"
    if kernel_library() is not None:
        return "aot"
    if backend == "aot":
        raise RuntimeError(f"fast conv backend 'aot' requested but unavailable: {_library['error']}")
    return "matmul"


# ----------------------------------------------------------------------------------------------
# Custom operators (one set per library and stride, shared by all cells)
# ----------------------------------------------------------------------------------------------

def _out_size(n, stride):
    """Output length of a 3x3, padding 1 conv; unknown (dynamic, -1) lengths stay unknown."""
    return -1 if n is None or n < 0 else (n - 1) // stride + 1


def _same_dtype(*dtypes):
    return dtypes[0]


@functools.lru_cache(maxsize=None)
def _aot_ops(lib, stride):
    """(depthwise conv, im2col) Custom operators for ``stride``, each with its C++ backward."""
    def custom(name, out_shape, bprop=None):
        return ops.Custom(f"{lib}:{name}S{stride}", out_shape=out_shape, out_dtype=_same_dtype,
                          func_type="aot", bprop=bprop)

    dw_grad_input = custom("DwBwdInput", lambda g, k, x: list(x))
    dw_grad_weight = custom("DwBwdWeight", lambda x, g: [x[1], 1, 3, 3])

    def dw_bprop(x, k, out, dout):
        return dw_grad_input(dout, k, x), dw_grad_weight(x, dout)

    depthwise = custom("DwFwd", lambda x, k: [x[0], x[1], _out_size(x[2], stride), _out_size(x[3], stride)],
                       dw_bprop)
    col2im = custom("Col2Im", lambda g, x: list(x))

    def im2col_bprop(x, out, dout):
        return (col2im(dout, x),)

    im2col = custom("Im2Col", lambda x: [x[0], x[1] * 9, _out_size(x[2], stride) * _out_size(x[3], stride)],
                    im2col_bprop)
    return depthwise, im2col


# ----------------------------------------------------------------------------------------------
# Constant window matrices for the matmul backend
# ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _row_taps(h, stride):
    """(3*Ho, H): row di*Ho + i selects input row stride*i + di - 1 (zero outside: the padding)."""
    ho = _out_size(h, stride)
    m = np.zeros((3 * ho, h), np.float32)
    for di in range(3):
        for i in range(ho):
            r = stride * i + di - 1
            if 0 <= r < h:
                m[di * ho + i, r] = 1.0
    return m


@functools.lru_cache(maxsize=256)
def _col_taps(w, stride):
    """(3, W, Wo): [dj, q, j] = 1 where input column q = stride*j + dj - 1 feeds output column j."""
    wo = _out_size(w, stride)
    m = np.zeros((3, w, wo), np.float32)
    for dj in range(3):
        for j in range(wo):
            q = stride * j + dj - 1
            if 0 <= q < w:
                m[dj, q, j] = 1.0
    return m


def _row_taps_tensor(h, stride):
    return Tensor(_row_taps(h, stride))


def _col_taps_tensor(w, stride):
    return Tensor(_col_taps(w, stride))


# ----------------------------------------------------------------------------------------------
# Cells
# ----------------------------------------------------------------------------------------------

class _Conv3x3(nn.Cell):
    """Holds nn.Conv2d's parameters (same names, shapes and init) and its descriptive attributes."""

    def __init__(self, in_channels, out_channels, stride, groups, has_bias):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = (3, 3)
        self.stride = (stride, stride)
        self.group = groups
        self.has_bias = has_bias
        self.s = stride
        self.weight = Parameter(initializer(Normal(0.001), (out_channels, in_channels // groups, 3, 3)),
                                name="weight")
        self.bias = Parameter(initializer("zeros", (out_channels,)), name="bias") if has_bias else None

    def extend_repr(self):
        return (f"input_channels={self.in_channels}, output_channels={self.out_channels}, kernel_size=(3, 3), "
                f"stride={self.stride}, pad_mode=pad, padding=1, group={self.group}, has_bias={self.has_bias}, "
                f"impl={type(self).__name__}")

    def _inputs(self, x):
        if x.dtype != mstype.float32:
            return x.astype(mstype.float32), self.weight.astype(mstype.float32)
        return x, self.weight

    def _output(self, y, dtype):
        if self.has_bias:
            bias = self.bias if self.bias.dtype == mstype.float32 else self.bias.astype(mstype.float32)
            y = ops.bias_add(y, bias)
        if dtype != mstype.float32:
            y = y.astype(dtype)
        return y


class DepthwiseConv3x3Aot(_Conv3x3):
    """Depthwise 3x3 conv, padding 1, stride 1 or 2: one C++ Custom operator (backward in C++ too)."""

    def __init__(self, channels, stride=1, has_bias=False, library=None):
        super().__init__(channels, channels, stride, channels, has_bias)
        self.conv_op = _aot_ops(library or kernel_library(), stride)[0]

    def construct(self, x):
        xf, k = self._inputs(x)
        return self._output(self.conv_op(xf, k), x.dtype)


class DenseConv3x3Aot(_Conv3x3):
    """Dense 3x3 conv, padding 1, stride 1 or 2: C++ im2col (backward col2im), then one MatMul."""

    def __init__(self, in_channels, out_channels, stride=1, has_bias=False, library=None):
        super().__init__(in_channels, out_channels, stride, 1, has_bias)
        self.im2col = _aot_ops(library or kernel_library(), stride)[1]

    def construct(self, x):
        n, _, h, w = x.shape
        xf, k = self._inputs(x)
        cols = self.im2col(xf)                                               # (N, Cin*9, Ho*Wo)
        y = ops.matmul(k.reshape(self.out_channels, -1), cols)               # (N, Cout, Ho*Wo)
        y = y.reshape(n, self.out_channels, (h - 1) // self.s + 1, (w - 1) // self.s + 1)
        return self._output(y, x.dtype)


class DepthwiseConv3x3MatMul(_Conv3x3):
    """Depthwise 3x3 conv with MatMuls only: Y = sum_di (S_di @ X) @ B_di, B_di banded from the weight."""

    def __init__(self, channels, stride=1, has_bias=False):
        super().__init__(channels, channels, stride, channels, has_bias)

    def construct(self, x):
        n, c, h, w = x.shape
        xf, k = self._inputs(x)
        s = self.s
        ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
        rows = _row_taps_tensor(h, s)                                        # (3Ho, H)
        cols = _col_taps_tensor(w, s)                                        # (3, W, Wo)
        band = ops.matmul(k.reshape(c * 3, 3), cols.reshape(3, w * wo))      # (C*3, W*Wo): B[c, di]
        u = ops.matmul(rows, xf).reshape(n, c, 3, ho, w)                      # rows of tap di
        y = ops.matmul(u, band.reshape(c, 3, w, wo)).sum(axis=2)
        return self._output(y, x.dtype)


class DenseConv3x3MatMul(_Conv3x3):
    """Dense 3x3 conv with MatMuls only: im2col = S @ X @ T (0/1 matrices), then Wmat @ im2col."""

    def __init__(self, in_channels, out_channels, stride=1, has_bias=False):
        super().__init__(in_channels, out_channels, stride, 1, has_bias)

    def construct(self, x):
        n, c, h, w = x.shape
        xf, k = self._inputs(x)
        s = self.s
        ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
        rows = _row_taps_tensor(h, s)                                        # (3Ho, H)
        cols = _col_taps_tensor(w, s).transpose(1, 0, 2).reshape(w, 3 * wo)  # (W, 3Wo)
        taps = ops.matmul(rows, ops.matmul(xf, cols))                        # (N, C, 3Ho, 3Wo)
        taps = taps.reshape(n, c, 3, ho, 3, wo).transpose(0, 1, 2, 4, 3, 5).reshape(n, c * 9, ho * wo)
        y = ops.matmul(k.reshape(self.out_channels, -1), taps).reshape(n, self.out_channels, ho, wo)
        return self._output(y, x.dtype)


def fast_conv2d(in_channels, out_channels, kernel_size, stride=1, groups=1, has_bias=False, backend=None):
    """A fast cell computing ``nn.Conv2d(in, out, k, stride, pad k//2, group=groups)``, or None to keep nn.Conv2d.

    Covered: 3x3 kernels with stride 1 or 2, either depthwise (groups == in == out) or dense (groups 1).
    ``backend``: 'auto' (C++ kernels when they build, else matmul), 'aot' or 'matmul'; default from
    the environment variable LITEHRNET_FAST_CONV_BACKEND, else 'auto'.
    """
    if kernel_size != 3 or stride not in (1, 2):
        return None
    depthwise = groups == in_channels == out_channels
    if not depthwise and groups != 1:
        return None
    if _resolve_backend(backend) == "aot":
        if depthwise:
            return DepthwiseConv3x3Aot(in_channels, stride, has_bias)
        return DenseConv3x3Aot(in_channels, out_channels, stride, has_bias)
    if depthwise:
        return DepthwiseConv3x3MatMul(in_channels, stride, has_bias)
    return DenseConv3x3MatMul(in_channels, out_channels, stride, has_bias)

// 3x3 convolution kernels (padding 1, stride 1 or 2, float32, NCHW) for MindSpore's CPU
// Custom(func_type="aot") operators. Depthwise: forward, input gradient, weight gradient.
// Dense: im2col and its adjoint col2im (a MatMul does the rest). Nearest upsampling by an integer
// factor fused with the add / multiply that consumes it, and the block sums of their backward.
// Every entry point has the Custom-aot signature and returns 0 on success.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace {

// ---- the worker pool (threads: LITEHRNET_CONV_THREADS, else the CPUs this process may use) --------

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

// Worker threads started once and reused by every kernel call (starting threads per call costs more
// than many of the small kernels themselves). One job at a time: a call that finds the pool busy
// (another operator running concurrently), or runs in a forked child, does its work on its own thread.
class Pool {
 public:
  static Pool &get() {
    static Pool *pool = new Pool(max_threads() - 1);  // never destroyed: no join at process exit
    return *pool;
  }
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs job(0) .. job(n - 1) (n <= size()), job(0) on this thread; false when the pool is unusable.
  bool run(int n, const std::function<void(int)> &job) {
    std::unique_lock<std::mutex> submit(submit_, std::try_to_lock);
    if (!submit.owns_lock() || getpid() != pid_) return false;
    {
      std::lock_guard<std::mutex> lock(m_);
      job_ = &job;
      active_ = n;
      pending_ = static_cast<int>(workers_.size());
      failed_ = false;
      ++generation_;
    }
    wake_.notify_all();
    bool failed = false;
    try {
      job(0);
    } catch (...) {
      failed = true;
    }
    std::unique_lock<std::mutex> lock(m_);
    done_.wait(lock, [this] { return pending_ == 0; });
    if (failed || failed_) throw std::runtime_error("kernel worker failed");
    return true;
  }

 private:
  explicit Pool(int workers) : pid_(getpid()) {
    for (int id = 1; id <= workers; ++id) {
      try {
        workers_.emplace_back([this, id] { loop(id); });
      } catch (...) {
        break;  // fewer threads than asked for: the pool is smaller
      }
    }
  }

  void loop(int id) {
    FlushDenormals flush;
    long seen = 0;
    for (;;) {
      const std::function<void(int)> *job;
      int active;
      {
        std::unique_lock<std::mutex> lock(m_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        job = job_;
        active = active_;
      }
      bool failed = false;
      if (id < active) {
        try {
          (*job)(id);
        } catch (...) {
          failed = true;
        }
      }
      std::lock_guard<std::mutex> lock(m_);
      failed_ = failed_ || failed;
      if (--pending_ == 0) done_.notify_one();
    }
  }

  const pid_t pid_;
  std::vector<std::thread> workers_;
  std::mutex submit_, m_;
  std::condition_variable wake_, done_;
  const std::function<void(int)> *job_ = nullptr;
  int active_ = 0, pending_ = 0;
  bool failed_ = false;
  long generation_ = 0;
};

// Split [0, items) over the pool; small jobs (under ~1e5 multiply-adds per thread) stay on this thread.
template <class F>
void parallel_for(int64_t items, int64_t work, F f) {
  FlushDenormals flush;
  const int64_t want = std::min<int64_t>({(int64_t)max_threads(), std::max<int64_t>(1, work / 100000), items});
  if (want > 1) {
    Pool &pool = Pool::get();
    const int64_t nt = std::min<int64_t>(want, pool.size());
    const int64_t chunk = (items + nt - 1) / nt;
    const std::function<void(int)> job = [&](int t) {
      const int64_t b = t * chunk;
      if (b < items) f(b, std::min(items, b + chunk));
    };
    if (nt > 1 && pool.run(static_cast<int>(nt), job)) return;
  }
  f(0, items);
}

// ---- shared helpers of the kernels -------------------------------------------------------------

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

// The planes of a 3x3, pad-1 convolution of stride S over an (N,C,H,W) input: output size and the
// padded row pitch.
struct Planes {
  int64_t N, C, H, W, Ho, Wo, Wp;
};
template <int S>
inline Planes planes_of(const int64_t *s) {
  return {s[0], s[1], s[2], s[3], (s[2] - 1) / S + 1, (s[3] - 1) / S + 1, s[3] + 2};
}

// Scratch for one worker: two planes of (H + 2) x (W + 3) floats (a padded plane and a second one, or
// split_plane's even and odd columns), plus `extra` floats of slack after them.
struct TwoPlanes {
  std::vector<float> buf;
  float *p, *q;
  TwoPlanes(int64_t H, int64_t W, int64_t extra = 0)
      : buf(2 * (H + 2) * (W + 3) + extra), p(buf.data()), q(buf.data() + (H + 2) * (W + 3)) {}
  void zero() { std::fill(buf.begin(), buf.end(), 0.f); }
};

// ---- depthwise ---------------------------------------------------------------------------------

// inputs: x (N,C,H,W), w (C,1,3,3); output y (N,C,Ho,Wo)
template <int S>
int dw_forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 3 || ndims[0] != 4 || !is_f32(dtypes[0]) || !is_f32(dtypes[1])) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  float *y = static_cast<float *>(params[2]);
  const Planes d = planes_of<S>(shapes[0]);  // plain copies: lambdas capture them (C++17)
  const int64_t N = d.N, C = d.C, H = d.H, W = d.W, Ho = d.Ho, Wo = d.Wo, Wp = d.Wp;
  if (!same4(ndims[1], shapes[1], C, 1, 3, 3) || !same4(ndims[2], shapes[2], N, C, Ho, Wo)) return 2;
  parallel_for(N * C, N * C * Ho * Wo * 9, [&](int64_t b, int64_t e) {
    TwoPlanes planes(H, W);
    float *p = planes.p, *q = planes.q;
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
  const Planes d = planes_of<S>(shapes[3]);  // plain copies: lambdas capture them (C++17)
  const int64_t N = d.N, C = d.C, H = d.H, W = d.W, Ho = d.Ho, Wo = d.Wo, Wp = d.Wp;
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
  const Planes d = planes_of<S>(shapes[0]);  // plain copies: lambdas capture them (C++17)
  const int64_t N = d.N, C = d.C, H = d.H, W = d.W, Ho = d.Ho, Wo = d.Wo, Wp = d.Wp;
  if (!same4(ndims[1], shapes[1], N, C, Ho, Wo) || !same4(ndims[2], shapes[2], C, 1, 3, 3)) return 2;
  const float *x = static_cast<const float *>(params[0]), *dy = static_cast<const float *>(params[1]);
  float *dw = static_cast<float *>(params[2]);
  parallel_for(C, N * C * Ho * Wo * 9, [&](int64_t b, int64_t e) {
    constexpr int B = 16;  // independent partial sums per tap (vectorisable without -ffast-math)
    TwoPlanes planes(H, W, B);
    float *p = planes.p, *q = planes.q;
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

// Where tap (di, dj) of output row i starts in the planes that pad_plane (S == 1: p, pitch Wp) or
// split_plane (S == 2: even columns in p at pitch Wo + 1, odd columns in q at pitch Wo) wrote.
template <int S>
inline float *tap_row(float *p, float *q, int64_t i, int di, int dj, int64_t Wo, int64_t Wp) {
  if (S == 1) return p + (i + di) * Wp + dj;
  return dj == 1 ? q + (2 * i + di) * Wo : p + (2 * i + di) * (Wo + 1) + dj / 2;
}

// inputs: x (N,C,H,W); output cols (N, C*9, Ho*Wo), row c*9 + di*3 + dj (the weight's (C,3,3) order)
template <int S>
int im2col(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 2 || ndims[0] != 4 || !is_f32(dtypes[0])) return 1;
  const float *x = static_cast<const float *>(params[0]);
  float *cols = static_cast<float *>(params[1]);
  const Planes d = planes_of<S>(shapes[0]);  // plain copies: lambdas capture them (C++17)
  const int64_t N = d.N, C = d.C, H = d.H, W = d.W, Ho = d.Ho, Wo = d.Wo, Wp = d.Wp;
  const int64_t P = Ho * Wo;
  if (ndims[1] != 3 || shapes[1][0] != N || shapes[1][1] != C * 9 || shapes[1][2] != P) return 2;
  parallel_for(N * C, N * C * P * 9, [&](int64_t b, int64_t e) {
    TwoPlanes planes(H, W);
    float *p = planes.p, *q = planes.q;
    for (int64_t nc = b; nc < e; ++nc) {
      if (S == 1) pad_plane(x + nc * H * W, H, W, p);
      else split_plane(x + nc * H * W, H, W, Wo, p, q);
      float *o = cols + nc * 9 * P;
      for (int t = 0; t < 9; ++t) {
        const int di = t / 3, dj = t % 3;
        for (int64_t i = 0; i < Ho; ++i) {
          const float *src = tap_row<S>(p, q, i, di, dj, Wo, Wp);
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
  const Planes d = planes_of<S>(shapes[1]);  // plain copies: lambdas capture them (C++17)
  const int64_t N = d.N, C = d.C, H = d.H, W = d.W, Ho = d.Ho, Wo = d.Wo, Wp = d.Wp;
  const int64_t P = Ho * Wo;
  if (ndims[0] != 3 || shapes[0][0] != N || shapes[0][1] != C * 9 || shapes[0][2] != P) return 2;
  if (!same4(ndims[2], shapes[2], N, C, H, W)) return 2;
  parallel_for(N * C, N * C * P * 9, [&](int64_t b, int64_t e) {
    TwoPlanes planes(H, W);
    float *p = planes.p, *q = planes.q;
    for (int64_t nc = b; nc < e; ++nc) {
      planes.zero();
      const float *gc = g + nc * 9 * P;
      for (int t = 0; t < 9; ++t) {
        const int di = t / 3, dj = t % 3;
        for (int64_t i = 0; i < Ho; ++i) {
          float *dst = tap_row<S>(p, q, i, di, dj, Wo, Wp);
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

// ---- nearest upsampling by integer factors, fused with its consumer -----------------------------
// up(z)[n][c][r][q] = z[n][c][r / SH][q / SW] with SH = H / h, SW = W / w read from the shapes
// (a (N,C,1,1) z scales whole channels). Rows are expanded once into a buffer, then combined with
// plain contiguous loops that the compiler vectorises.

inline bool up_factors(int64_t **shapes, int big, int small, int64_t *SH, int64_t *SW) {
  const int64_t *b = shapes[big], *s = shapes[small];
  if (s[2] <= 0 || s[3] <= 0 || b[2] % s[2] || b[3] % s[3]) return false;
  *SH = b[2] / s[2];
  *SW = b[3] / s[3];
  return b[0] == s[0] && b[1] == s[1];
}

// inputs: y (N,C,H,W), z (N,C,h,w); output y + up(z) (MUL: y * up(z))
template <bool MUL>
int up_combine(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 3 || ndims[0] != 4 || ndims[1] != 4 || !is_f32(dtypes[0]) || !is_f32(dtypes[1])) return 1;
  const float *y = static_cast<const float *>(params[0]);
  const float *z = static_cast<const float *>(params[1]);
  float *out = static_cast<float *>(params[2]);
  const int64_t N = shapes[0][0], C = shapes[0][1], H = shapes[0][2], W = shapes[0][3], w = shapes[1][3];
  int64_t SH = 0, SW = 0;
  if (!up_factors(shapes, 0, 1, &SH, &SW) || !same4(ndims[2], shapes[2], N, C, H, W)) return 2;
  parallel_for(N * C * shapes[1][2], N * C * H * W, [&](int64_t b, int64_t e) {
    std::vector<float> buf(W);
    float *__restrict v = buf.data();
    for (int64_t row = b; row < e; ++row) {  // row (n, c, i) of z covers rows row*SH .. row*SH+SH-1 of y
      const float *zr = z + row * w;
      for (int64_t j = 0; j < w; ++j) std::fill(v + j * SW, v + j * SW + SW, zr[j]);
      for (int64_t a = 0; a < SH; ++a) {
        const float *__restrict yr = y + (row * SH + a) * W;
        float *__restrict o = out + (row * SH + a) * W;
        if (MUL) {
          for (int64_t t = 0; t < W; ++t) o[t] = yr[t] * v[t];
        } else {
          for (int64_t t = 0; t < W; ++t) o[t] = yr[t] + v[t];
        }
      }
    }
  });
  return 0;
}

// inputs: g (N,C,H,W), [x (N,C,H,W) when MUL,] z (N,C,h,w) (its shape only); output the SHxSW block
// sums of g (MUL: of g * x): the gradient that reaches z through up(z).
template <bool MUL>
int up_block_sum(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  const int zi = MUL ? 2 : 1;
  if (nparam != zi + 2 || ndims[0] != 4 || ndims[zi] != 4 || !is_f32(dtypes[0]) || (MUL && !is_f32(dtypes[1])))
    return 1;
  const float *g = static_cast<const float *>(params[0]);
  const float *x = MUL ? static_cast<const float *>(params[1]) : nullptr;
  float *out = static_cast<float *>(params[zi + 1]);
  const int64_t N = shapes[0][0], C = shapes[0][1], H = shapes[0][2], W = shapes[0][3];
  const int64_t h = shapes[zi][2], w = shapes[zi][3];
  int64_t SH = 0, SW = 0;
  if (!up_factors(shapes, 0, zi, &SH, &SW) || (MUL && !same4(ndims[1], shapes[1], N, C, H, W)) ||
      !same4(ndims[zi + 1], shapes[zi + 1], N, C, h, w))
    return 2;
  parallel_for(N * C * h, N * C * H * W, [&](int64_t b, int64_t e) {
    std::vector<float> buf(W);
    float *__restrict acc = buf.data();
    for (int64_t row = b; row < e; ++row) {
      std::fill(acc, acc + W, 0.f);
      for (int64_t a = 0; a < SH; ++a) {
        const float *__restrict gr = g + (row * SH + a) * W;
        if (MUL) {
          const float *__restrict xr = x + (row * SH + a) * W;
          for (int64_t t = 0; t < W; ++t) acc[t] += gr[t] * xr[t];
        } else {
          for (int64_t t = 0; t < W; ++t) acc[t] += gr[t];
        }
      }
      float *o = out + row * w;
      for (int64_t j = 0; j < w; ++j) {
        float sum = 0.f;
        for (int64_t t = j * SW; t < j * SW + SW; ++t) sum += acc[t];
        o[j] = sum;
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
LITEHRNET_EXPORT(UpAdd, up_combine<false>)
LITEHRNET_EXPORT(UpMul, up_combine<true>)
LITEHRNET_EXPORT(UpAddGrad, up_block_sum<false>)
LITEHRNET_EXPORT(UpMulGrad, up_block_sum<true>)

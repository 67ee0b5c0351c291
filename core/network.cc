// Network<T>: initialization, feedforward and the four equations of
// backpropagation (Nielsen, NNDL ch. 2) for a whole mini-batch at once, one
// example per column. Costs follow API.md "The math the numbers must match".
#include "core/network.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <random>
#include <stdexcept>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include <armadillo>

#include "core/spec.h"

// Hot loops are compiled once per instruction set (AVX-512, AVX2+FMA,
// baseline) and picked at load time. Not under ThreadSanitizer: the ifunc
// resolvers run before TSan's runtime is up, and every binary would crash
// while loading.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_THREAD__)
#define BACKPROP_MULTIVERSION \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BACKPROP_MULTIVERSION
#endif
#define BACKPROP_INLINE __attribute__((always_inline)) inline
// 64-byte vectors only ever live inside the inlined kernels, so the ABI
// note about passing them between functions does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

// glibc's vector math library (libmvec) has SIMD versions of exp and tanh
// for each of those instruction sets, accurate to within 4 ulps (the glibc
// manual's bound; the tests compare against long double). Declaring the
// functions SIMD-callable lets GCC vectorize the activation loops with them;
// core is compiled with -fno-math-errno, which vectorizing calls requires
// (nothing here reads errno). math.h makes the same declarations itself only
// under -ffast-math, which would also reorder our sums.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
extern "C" {
__attribute__((simd("notinbranch"))) double exp(double) noexcept;
__attribute__((simd("notinbranch"))) float expf(float) noexcept;
__attribute__((simd("notinbranch"))) double tanh(double) noexcept;
__attribute__((simd("notinbranch"))) float tanhf(float) noexcept;
}
#endif

namespace backprop {
namespace {

// Columns per pass when Feedforward/Backprop/Cost walk a large batch, so
// their buffers stay small whatever m is.
constexpr arma::uword kChunk = 1024;

// Threshold below which |sigma'(z)| counts as saturated (trainer.h).
constexpr double kSaturated = 0.01;

// Gradient check: parameters whose analytic and numeric gradients are both
// below this size count as agreeing (their relative error is reported as 0;
// their absolute error still counts).
constexpr double kCheckFloor = 1e-12;

// log(1 + e^t) without overflow or log(0).
inline double Softplus(double t) {
  return std::max(t, 0.0) + std::log1p(std::exp(-std::abs(t)));
}

// A second, independent evaluation of C = 1/m sum_x C_x for the gradient
// check: plain loops in long double (x87 extended precision, 64-bit
// mantissa), no Armadillo, no BLAS. Central differences subtract two costs
// that agree in almost every digit; in float64 that leaves ~1e-16 |C| / eps
// of rounding noise, which swamps small gradients, while here it is ~2000x
// smaller.
long double ScalarActivation(Activation f, long double z) {
  switch (f) {
    case Activation::kSigmoid:
      return 1.0L / (1.0L + std::exp(-z));
    case Activation::kTanh:
      return std::tanh(z);
    case Activation::kRelu:
      return z > 0 ? z : 0.0L;
    default:  // kIdentity; kSoftmax is handled per column by the caller
      return z;
  }
}

long double ScalarSoftplus(long double t) {
  return std::max(t, 0.0L) + std::log1p(std::exp(-std::abs(t)));
}

long double LongDoubleCost(const Network<double>& net, const arma::mat& x,
                           const arma::mat& y) {
  const ModelSpec& spec = net.spec();
  const size_t L = net.num_layers() - 1;
  std::vector<long double> a, z;
  long double total = 0;
  for (arma::uword j = 0; j < x.n_cols; ++j) {
    a.assign(x.colptr(j), x.colptr(j) + x.n_rows);
    for (size_t l = 1; l <= L; ++l) {
      const arma::mat& w = net.w(l);
      z.assign(net.b(l).begin(), net.b(l).end());
      for (arma::uword k = 0; k < w.n_cols; ++k) {  // z^l = w^l a^{l-1} + b^l
        const double* wk = w.colptr(k);
        for (arma::uword i = 0; i < w.n_rows; ++i) z[i] += wk[i] * a[k];
      }
      const Activation f =
          l == L ? spec.output_activation : spec.hidden_activation;
      a.resize(z.size());
      if (f == Activation::kSoftmax) {
        const long double top = *std::max_element(z.begin(), z.end());
        long double sum = 0;
        for (long double v : z) sum += std::exp(v - top);
        const long double log_sum = top + std::log(sum);
        for (size_t i = 0; i < z.size(); ++i) a[i] = z[i] - log_sum;  // ln a
      } else {
        for (size_t i = 0; i < z.size(); ++i) {
          a[i] = ScalarActivation(f, z[i]);
        }
      }
    }
    const double* yc = y.colptr(j);
    long double c = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      if (spec.cost == Cost::kQuadratic) {
        c += 0.5L * (yc[i] - a[i]) * (yc[i] - a[i]);
      } else if (spec.output_activation == Activation::kSoftmax) {
        c -= yc[i] * a[i];  // a holds ln a here
      } else {              // binary cross-entropy from z: ln a = -softplus(-z)
        c += yc[i] * ScalarSoftplus(-z[i]) + (1 - yc[i]) * ScalarSoftplus(z[i]);
      }
    }
    total += c;
  }
  return total / static_cast<long double>(x.n_cols);
}

template <typename T>
DType DTypeOf();
template <>
DType DTypeOf<double>() {
  return DType::kFloat64;
}
template <>
DType DTypeOf<float>() {
  return DType::kFloat32;
}

// sigma(z) of the first n rows of m columns (leading dimension ld) of a
// hidden or output layer; z and a may alias.
template <typename T>
BACKPROP_INLINE void ActivateImpl(Activation f, const T* z, T* a,
                                  arma::uword n, arma::uword m,
                                  arma::uword ld) {
  for (arma::uword j = 0; j < m; ++j) {
    const T* zc = z + j * ld;
    T* ac = a + j * ld;
    switch (f) {
      case Activation::kSigmoid:
        for (arma::uword i = 0; i < n; ++i) {
          ac[i] = T{1} / (T{1} + std::exp(-zc[i]));
        }
        break;
      case Activation::kTanh:
        for (arma::uword i = 0; i < n; ++i) ac[i] = std::tanh(zc[i]);
        break;
      case Activation::kRelu:
        for (arma::uword i = 0; i < n; ++i) {
          ac[i] = zc[i] > T{0} ? zc[i] : T{0};
        }
        break;
      case Activation::kIdentity:
        if (ac != zc) std::memcpy(ac, zc, n * sizeof(T));
        break;
      case Activation::kSoftmax: {
        // After subtracting the column's maximum, so exp never overflows;
        // the result is mathematically unchanged.
        T top = zc[0];
        for (arma::uword i = 1; i < n; ++i) top = std::max(top, zc[i]);
        T sum = 0;
        for (arma::uword i = 0; i < n; ++i) {
          ac[i] = std::exp(zc[i] - top);
          sum += ac[i];
        }
        const T inv = T{1} / sum;
        for (arma::uword i = 0; i < n; ++i) ac[i] *= inv;
        break;
      }
    }
  }
}

BACKPROP_MULTIVERSION
void Activate(Activation f, const double* z, double* a, arma::uword n,
              arma::uword m, arma::uword ld) {
  ActivateImpl<double>(f, z, a, n, m, ld);
}
BACKPROP_MULTIVERSION
void Activate(Activation f, const float* z, float* a, arma::uword n,
              arma::uword m, arma::uword ld) {
  ActivateImpl<float>(f, z, a, n, m, ld);
}

// d *= sigma'(z) on n rows of m columns, with sigma' written in terms of
// a = sigma(z) (exact for every activation for which sigma' is needed;
// RELU's sigma'(0) is 0 because a > 0 exactly when z > 0).
template <typename T>
BACKPROP_INLINE void MultiplyByPrimeImpl(Activation f, const T* a, T* d,
                                         arma::uword n, arma::uword m,
                                         arma::uword ld) {
  for (arma::uword j = 0; j < m; ++j) {
    const T* ac = a + j * ld;
    T* dc = d + j * ld;
    switch (f) {
      case Activation::kSigmoid:
        for (arma::uword i = 0; i < n; ++i) dc[i] *= ac[i] * (T{1} - ac[i]);
        break;
      case Activation::kTanh:
        for (arma::uword i = 0; i < n; ++i) dc[i] *= T{1} - ac[i] * ac[i];
        break;
      case Activation::kRelu:
        for (arma::uword i = 0; i < n; ++i) {
          dc[i] = ac[i] > T{0} ? dc[i] : T{0};
        }
        break;
      case Activation::kIdentity:
      case Activation::kSoftmax:  // only reached with CROSS_ENTROPY: unused
        break;
    }
  }
}

BACKPROP_MULTIVERSION
void MultiplyByPrime(Activation f, const double* a, double* d, arma::uword n,
                     arma::uword m, arma::uword ld) {
  MultiplyByPrimeImpl<double>(f, a, d, n, m, ld);
}
BACKPROP_MULTIVERSION
void MultiplyByPrime(Activation f, const float* a, float* d, arma::uword n,
                     arma::uword m, arma::uword ld) {
  MultiplyByPrimeImpl<float>(f, a, d, n, m, ld);
}

// Sum over m examples of C_x (in double), from the output layer's z and a
// (n x m, leading dimension ld) and targets y (leading dimension ldy).
template <typename T>
double OutputCostSum(const ModelSpec& spec, const T* z, const T* a, const T* y,
                     arma::uword n, arma::uword m, arma::uword ld,
                     arma::uword ldy) {
  double total = 0;
  for (arma::uword j = 0; j < m; ++j) {
    const T* zc = z + j * ld;
    const T* ac = a + j * ld;
    const T* yc = y + j * ldy;
    if (spec.cost == Cost::kQuadratic) {
      // C_x = 1/2 ||y - a^L||^2
      for (arma::uword i = 0; i < n; ++i) {
        const double d =
            static_cast<double>(yc[i]) - static_cast<double>(ac[i]);
        total += 0.5 * d * d;
      }
    } else if (spec.output_activation == Activation::kSigmoid) {
      // C_x = -sum_j [y ln a + (1 - y) ln(1 - a)] with ln a = -softplus(-z)
      // and ln(1 - a) = -softplus(z): never log(0), even when a rounds to 0/1.
      for (arma::uword i = 0; i < n; ++i) {
        const double yi = yc[i];
        const double zi = zc[i];
        total += yi * Softplus(-zi) + (1.0 - yi) * Softplus(zi);
      }
    } else {
      // Softmax: C_x = -sum_j y_j ln a_j with ln a_j = z_j - logsumexp(z).
      double top = zc[0];
      for (arma::uword i = 1; i < n; ++i) {
        top = std::max(top, static_cast<double>(zc[i]));
      }
      double sum = 0;
      for (arma::uword i = 0; i < n; ++i) sum += std::exp(zc[i] - top);
      const double lse = top + std::log(sum);
      for (arma::uword i = 0; i < n; ++i) {
        total += static_cast<double>(yc[i]) * (lse - zc[i]);
      }
    }
  }
  return total;
}

// BP1 into d (n x m, leading dimension ld): delta^L = (a^L - y) (.)
// sigma'(z^L) for QUADRATIC; for CROSS_ENTROPY (sigmoid or softmax) sigma'
// cancels and delta^L = a^L - y.
template <typename T>
void OutputDelta(const ModelSpec& spec, const T* a, const T* y, T* d,
                 arma::uword n, arma::uword m, arma::uword ld,
                 arma::uword ldy) {
  for (arma::uword j = 0; j < m; ++j) {
    for (arma::uword i = 0; i < n; ++i)
      d[j * ld + i] = a[j * ld + i] - y[j * ldy + i];
  }
  if (spec.cost == Cost::kQuadratic) {
    MultiplyByPrime(spec.output_activation, a, d, n, m, ld);
  }
}

// How many of n x m activations have |sigma'(z)| < 0.01 (SIGMOID, TANH).
template <typename T>
BACKPROP_INLINE uint64_t CountSaturatedImpl(Activation f, const T* a,
                                            arma::uword n, arma::uword m,
                                            arma::uword ld) {
  uint64_t saturated = 0;
  for (arma::uword j = 0; j < m; ++j) {
    const T* ac = a + j * ld;
    if (f == Activation::kSigmoid) {
      for (arma::uword i = 0; i < n; ++i) {
        saturated += ac[i] * (T{1} - ac[i]) < T(kSaturated);
      }
    } else if (f == Activation::kTanh) {
      for (arma::uword i = 0; i < n; ++i) {
        saturated += T{1} - ac[i] * ac[i] < T(kSaturated);
      }
    }
  }
  return saturated;
}

BACKPROP_MULTIVERSION
uint64_t CountSaturatedIn(Activation f, const double* a, arma::uword n,
                          arma::uword m, arma::uword ld) {
  return CountSaturatedImpl<double>(f, a, n, m, ld);
}
BACKPROP_MULTIVERSION
uint64_t CountSaturatedIn(Activation f, const float* a, arma::uword n,
                          arma::uword m, arma::uword ld) {
  return CountSaturatedImpl<float>(f, a, n, m, ld);
}

Activation LayerActivation(const ModelSpec& spec, size_t l) {
  return l + 1 == spec.layer_sizes.size() ? spec.output_activation
                                          : spec.hidden_activation;
}

absl::Status CheckWidths(const ModelSpec& spec) {
  for (uint32_t n : spec.layer_sizes) {
    if (n > internal::kMaxDimension) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer width ", n, " is over the engine's limit of ",
                       internal::kMaxDimension));
    }
  }
  return absl::OkStatus();
}

template <typename T>
absl::Status CheckBatch(const Network<T>& net, const arma::Mat<T>& x,
                        const arma::Mat<T>* y) {
  if (x.n_cols == 0) {
    return absl::InvalidArgumentError("the batch has no examples (0 columns)");
  }
  if (x.n_rows != net.input_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("inputs have ", x.n_rows, " rows but the network takes ",
                     net.input_size(), " features"));
  }
  if (y != nullptr) {
    if (y->n_rows != net.output_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("targets have ", y->n_rows, " rows but the network has ",
                       net.output_size(), " outputs"));
    }
    if (y->n_cols != x.n_cols) {
      return absl::InvalidArgumentError(absl::StrCat(
          "inputs have ", x.n_cols, " examples but targets have ", y->n_cols));
    }
  }
  return absl::OkStatus();
}

// C = 1/m sum_x C_x over all columns, in chunks of the workspace's size.
template <typename T>
double ChunkedCost(const Network<T>& net, internal::BatchWorkspace<T>& ws,
                   const arma::Mat<T>& x, const arma::Mat<T>& y) {
  double total = 0;
  for (arma::uword first = 0; first < x.n_cols; first += ws.max_m()) {
    const arma::uword m = std::min(ws.max_m(), x.n_cols - first);
    ws.Forward(net, x.colptr(first), m);
    total += ws.CostSum(y.colptr(first), m);
  }
  return total / static_cast<double>(x.n_cols);
}

// ---------------------------------------------------------------------------
// Register-blocked kernels for small mini-batches (SgdEngine). A column of a
// padded matrix holds ld rows, ld a multiple of kPadBytes, so every vector
// load is a whole one; rows past the layer width are zero. The code uses GCC
// vector extensions of B bytes and is compiled once per instruction set
// (BACKPROP_MULTIVERSION, above); each entry point picks B per call with
// WideVectors().

constexpr arma::uword kPadBytes = 64;
template <typename T, int B>
struct VecOf {
  typedef T type __attribute__((vector_size(B)));
};
template <typename T, int B>
constexpr arma::uword kLanes = B / sizeof(T);
static_assert(kPadBytes % 32 == 0, "both vector widths must divide ld");

// 64-byte vectors where the x86-64-v4 (AVX-512) clones run, 32-byte ones
// everywhere else. GCC lowers a 64-byte vector on an AVX2 target by moving
// it through the stack around every operation: with 64 bytes everywhere,
// config A trained 4x slower than OpenBLAS's GEMMs alone on a Zen 3 (AVX2
// only), and a one-example feedforward took 45 us (BENCHMARKS.md).
inline bool WideVectors() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  static const bool wide = __builtin_cpu_supports("x86-64-v4");
  return wide;
#else
  return false;
#endif
}

template <typename V, typename T>
BACKPROP_INLINE V Load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename V, typename T>
BACKPROP_INLINE void Store(T* p, V v) {
  std::memcpy(p, &v, sizeof(v));
}
template <typename V, typename T>
BACKPROP_INLINE V Splat(T x) {
  // Filled through an array, GCC emits one broadcast (from memory, or inside
  // the FMA on AVX-512) for both element types and every clone. The
  // alternatives measured worse in the dispatched kernels: 0 + x keeps a
  // scalar add before each broadcast (0 + -0 = +0, so it cannot be
  // dropped); x - 0 and a lane-by-lane loop compile to chains of inserts for
  // float.
  T lanes[sizeof(V) / sizeof(T)];
  for (T& t : lanes) t = x;
  V v;
  std::memcpy(&v, lanes, sizeof(v));
  return v;
}
template <typename V>
BACKPROP_INLINE double SumLanes(V v) {
  double s = 0;
  for (size_t i = 0; i < sizeof(V) / sizeof(v[0]); ++i) s += v[i];
  return s;
}

// z (ld x JB) = w (ld x k) a + b for the JB columns a[j] (k values each):
// a vector of ld-rows by JB accumulators stays in registers over all k.
template <typename T, int B, int JB>
BACKPROP_INLINE void ForwardBlock(arma::uword k, arma::uword ld, const T* w,
                                  const T* b, const T* const* a, T* z) {
  using V = typename VecOf<T, B>::type;
  for (arma::uword ib = 0; ib < ld; ib += kLanes<T, B>) {
    V acc[JB];
    const V bv = Load<V>(b + ib);
    for (int j = 0; j < JB; ++j) acc[j] = bv;
    const T* wp = w + ib;
    for (arma::uword p = 0; p < k; ++p, wp += ld) {
      const V wv = Load<V>(wp);
      for (int j = 0; j < JB; ++j) acc[j] += wv * Splat<V>(a[j][p]);
    }
    for (int j = 0; j < JB; ++j) Store(z + j * ld + ib, acc[j]);
  }
}

template <typename T, int B, int JB>
BACKPROP_INLINE void ForwardDispatch(arma::uword m, arma::uword k,
                                     arma::uword ld, const T* w, const T* b,
                                     const T* const* a, T* z) {
  if (m == JB) {
    ForwardBlock<T, B, JB>(k, ld, w, b, a, z);
  } else if constexpr (JB > 1) {
    ForwardDispatch<T, B, JB - 1>(m, k, ld, w, b, a, z);
  }
}

BACKPROP_MULTIVERSION
void ForwardSmallWide(arma::uword m, arma::uword k, arma::uword ld,
                      const double* w, const double* b, const double* const* a,
                      double* z) {
  ForwardDispatch<double, 64, 16>(m, k, ld, w, b, a, z);
}
BACKPROP_MULTIVERSION
void ForwardSmallNarrow(arma::uword m, arma::uword k, arma::uword ld,
                        const double* w, const double* b,
                        const double* const* a, double* z) {
  ForwardDispatch<double, 32, 16>(m, k, ld, w, b, a, z);
}
void ForwardSmall(arma::uword m, arma::uword k, arma::uword ld, const double* w,
                  const double* b, const double* const* a, double* z) {
  WideVectors() ? ForwardSmallWide(m, k, ld, w, b, a, z)
                : ForwardSmallNarrow(m, k, ld, w, b, a, z);
}
BACKPROP_MULTIVERSION
void ForwardSmallWide(arma::uword m, arma::uword k, arma::uword ld,
                      const float* w, const float* b, const float* const* a,
                      float* z) {
  ForwardDispatch<float, 64, 16>(m, k, ld, w, b, a, z);
}
BACKPROP_MULTIVERSION
void ForwardSmallNarrow(arma::uword m, arma::uword k, arma::uword ld,
                        const float* w, const float* b, const float* const* a,
                        float* z) {
  ForwardDispatch<float, 32, 16>(m, k, ld, w, b, a, z);
}
void ForwardSmall(arma::uword m, arma::uword k, arma::uword ld, const float* w,
                  const float* b, const float* const* a, float* z) {
  WideVectors() ? ForwardSmallWide(m, k, ld, w, b, a, z)
                : ForwardSmallNarrow(m, k, ld, w, b, a, z);
}

// The SGD update fused into BP4. d (ld x JB) is delta^l already divided by
// m; for every weight, g = sum_j d_j a_j^T + decay w is formed in registers,
// ||g||^2 accumulated, and then v <- mu v - eta g, w <- w + v (kMomentum) or
// w <- w - eta g (no momentum: v = -eta g exactly). Returns ||g||_F^2.
template <typename T, int B, int JB, bool kDecay, bool kMomentum>
BACKPROP_INLINE double UpdateBlock(arma::uword k, arma::uword ld, T* w, T* v,
                                   const T* d, const T* const* a, T eta,
                                   T decay, T mu) {
  using V = typename VecOf<T, B>::type;
  const V eta_v = Splat<V>(eta);
  const V decay_v = Splat<V>(decay);
  const V mu_v = Splat<V>(mu);
  double norm2 = 0;
  for (arma::uword ib = 0; ib < ld; ib += kLanes<T, B>) {
    V dr[JB];
    for (int j = 0; j < JB; ++j) dr[j] = Load<V>(d + j * ld + ib);
    V g2 = Splat<V>(T{0});
    T* wp = w + ib;
    T* vp = v + ib;
    for (arma::uword p = 0; p < k; ++p, wp += ld, vp += ld) {
      V g = dr[0] * Splat<V>(a[0][p]);
      for (int j = 1; j < JB; ++j) g += dr[j] * Splat<V>(a[j][p]);
      const V wv = Load<V>(wp);
      if constexpr (kDecay) g += decay_v * wv;
      g2 += g * g;
      if constexpr (kMomentum) {
        const V vv = mu_v * Load<V>(vp) - eta_v * g;
        Store(vp, vv);
        Store(wp, wv + vv);
      } else {
        Store(wp, wv - eta_v * g);
      }
    }
    norm2 += SumLanes(g2);
  }
  return norm2;
}

template <typename T, int B, int JB, bool kDecay, bool kMomentum>
BACKPROP_INLINE double UpdateDispatch(arma::uword m, arma::uword k,
                                      arma::uword ld, T* w, T* v, const T* d,
                                      const T* const* a, T eta, T decay, T mu) {
  if (m == JB) {
    return UpdateBlock<T, B, JB, kDecay, kMomentum>(k, ld, w, v, d, a, eta,
                                                    decay, mu);
  }
  if constexpr (JB > 1) {
    return UpdateDispatch<T, B, JB - 1, kDecay, kMomentum>(m, k, ld, w, v, d, a,
                                                           eta, decay, mu);
  }
  return 0;
}

template <typename T, int B>
BACKPROP_INLINE double UpdateAny(arma::uword m, arma::uword k, arma::uword ld,
                                 T* w, T* v, const T* d, const T* const* a,
                                 T eta, T decay, T mu) {
  if (mu != T{0}) {
    return UpdateDispatch<T, B, 16, true, true>(m, k, ld, w, v, d, a, eta,
                                                decay, mu);
  }
  if (decay != T{0}) {
    return UpdateDispatch<T, B, 16, true, false>(m, k, ld, w, v, d, a, eta,
                                                 decay, mu);
  }
  return UpdateDispatch<T, B, 16, false, false>(m, k, ld, w, v, d, a, eta,
                                                decay, mu);
}

BACKPROP_MULTIVERSION
double UpdateSmallWide(arma::uword m, arma::uword k, arma::uword ld, double* w,
                       double* v, const double* d, const double* const* a,
                       double eta, double decay, double mu) {
  return UpdateAny<double, 64>(m, k, ld, w, v, d, a, eta, decay, mu);
}
BACKPROP_MULTIVERSION
double UpdateSmallNarrow(arma::uword m, arma::uword k, arma::uword ld,
                         double* w, double* v, const double* d,
                         const double* const* a, double eta, double decay,
                         double mu) {
  return UpdateAny<double, 32>(m, k, ld, w, v, d, a, eta, decay, mu);
}
double UpdateSmall(arma::uword m, arma::uword k, arma::uword ld, double* w,
                   double* v, const double* d, const double* const* a,
                   double eta, double decay, double mu) {
  return WideVectors()
             ? UpdateSmallWide(m, k, ld, w, v, d, a, eta, decay, mu)
             : UpdateSmallNarrow(m, k, ld, w, v, d, a, eta, decay, mu);
}
BACKPROP_MULTIVERSION
double UpdateSmallWide(arma::uword m, arma::uword k, arma::uword ld, float* w,
                       float* v, const float* d, const float* const* a,
                       float eta, float decay, float mu) {
  return UpdateAny<float, 64>(m, k, ld, w, v, d, a, eta, decay, mu);
}
BACKPROP_MULTIVERSION
double UpdateSmallNarrow(arma::uword m, arma::uword k, arma::uword ld, float* w,
                         float* v, const float* d, const float* const* a,
                         float eta, float decay, float mu) {
  return UpdateAny<float, 32>(m, k, ld, w, v, d, a, eta, decay, mu);
}
double UpdateSmall(arma::uword m, arma::uword k, arma::uword ld, float* w,
                   float* v, const float* d, const float* const* a, float eta,
                   float decay, float mu) {
  return WideVectors()
             ? UpdateSmallWide(m, k, ld, w, v, d, a, eta, decay, mu)
             : UpdateSmallNarrow(m, k, ld, w, v, d, a, eta, decay, mu);
}

// The SGD update from an explicit BP4 sum (the BLAS path): for count
// weights (a multiple of the vector width), g = g_data + decay w, then
// v <- mu v - eta g, w <- w + v. Returns ||g||^2, summed per 1024 weights in
// T lanes and across blocks in double.
template <typename T, int B>
BACKPROP_INLINE double ApplyGradientImpl(arma::uword count, const T* g_data,
                                         T* w, T* v, T eta, T decay, T mu) {
  using V = typename VecOf<T, B>::type;
  const V eta_v = Splat<V>(eta);
  const V decay_v = Splat<V>(decay);
  const V mu_v = Splat<V>(mu);
  double norm2 = 0;
  for (arma::uword start = 0; start < count; start += 1024) {
    const arma::uword end = std::min<arma::uword>(start + 1024, count);
    V g2 = Splat<V>(T{0});
    for (arma::uword i = start; i < end; i += kLanes<T, B>) {
      const V wv = Load<V>(w + i);
      const V g = Load<V>(g_data + i) + decay_v * wv;
      g2 += g * g;
      const V vv = mu_v * Load<V>(v + i) - eta_v * g;
      Store(v + i, vv);
      Store(w + i, wv + vv);
    }
    norm2 += SumLanes(g2);
  }
  return norm2;
}
BACKPROP_MULTIVERSION
double ApplyGradientWide(arma::uword count, const double* g, double* w,
                         double* v, double eta, double decay, double mu) {
  return ApplyGradientImpl<double, 64>(count, g, w, v, eta, decay, mu);
}
BACKPROP_MULTIVERSION
double ApplyGradientNarrow(arma::uword count, const double* g, double* w,
                           double* v, double eta, double decay, double mu) {
  return ApplyGradientImpl<double, 32>(count, g, w, v, eta, decay, mu);
}
double ApplyGradient(arma::uword count, const double* g, double* w, double* v,
                     double eta, double decay, double mu) {
  return WideVectors() ? ApplyGradientWide(count, g, w, v, eta, decay, mu)
                       : ApplyGradientNarrow(count, g, w, v, eta, decay, mu);
}
BACKPROP_MULTIVERSION
double ApplyGradientWide(arma::uword count, const float* g, float* w, float* v,
                         float eta, float decay, float mu) {
  return ApplyGradientImpl<float, 64>(count, g, w, v, eta, decay, mu);
}
BACKPROP_MULTIVERSION
double ApplyGradientNarrow(arma::uword count, const float* g, float* w,
                           float* v, float eta, float decay, float mu) {
  return ApplyGradientImpl<float, 32>(count, g, w, v, eta, decay, mu);
}
double ApplyGradient(arma::uword count, const float* g, float* w, float* v,
                     float eta, float decay, float mu) {
  return WideVectors() ? ApplyGradientWide(count, g, w, v, eta, decay, mu)
                       : ApplyGradientNarrow(count, g, w, v, eta, decay, mu);
}

// d_l[p, j] = sum_i w[i, p] d_next[i, j] for p < n (w: ld_next x n), the
// first half of BP2, as dot products of whole padded columns.
template <typename T, int B>
BACKPROP_INLINE void BackwardDotsImpl(arma::uword m, arma::uword n,
                                      arma::uword ld, arma::uword ld_next,
                                      const T* w, const T* d_next, T* d) {
  using V = typename VecOf<T, B>::type;
  for (arma::uword j = 0; j < m; ++j) {
    const T* dn = d_next + j * ld_next;
    for (arma::uword p = 0; p < n; ++p) {
      const T* wp = w + p * ld_next;
      V acc = Splat<V>(T{0});
      for (arma::uword i = 0; i < ld_next; i += kLanes<T, B>) {
        acc += Load<V>(wp + i) * Load<V>(dn + i);
      }
      d[j * ld + p] = static_cast<T>(SumLanes(acc));
    }
  }
}
BACKPROP_MULTIVERSION
void BackwardDotsWide(arma::uword m, arma::uword n, arma::uword ld,
                      arma::uword ld_next, const double* w,
                      const double* d_next, double* d) {
  BackwardDotsImpl<double, 64>(m, n, ld, ld_next, w, d_next, d);
}
BACKPROP_MULTIVERSION
void BackwardDotsNarrow(arma::uword m, arma::uword n, arma::uword ld,
                        arma::uword ld_next, const double* w,
                        const double* d_next, double* d) {
  BackwardDotsImpl<double, 32>(m, n, ld, ld_next, w, d_next, d);
}
void BackwardDots(arma::uword m, arma::uword n, arma::uword ld,
                  arma::uword ld_next, const double* w, const double* d_next,
                  double* d) {
  WideVectors() ? BackwardDotsWide(m, n, ld, ld_next, w, d_next, d)
                : BackwardDotsNarrow(m, n, ld, ld_next, w, d_next, d);
}
BACKPROP_MULTIVERSION
void BackwardDotsWide(arma::uword m, arma::uword n, arma::uword ld,
                      arma::uword ld_next, const float* w, const float* d_next,
                      float* d) {
  BackwardDotsImpl<float, 64>(m, n, ld, ld_next, w, d_next, d);
}
BACKPROP_MULTIVERSION
void BackwardDotsNarrow(arma::uword m, arma::uword n, arma::uword ld,
                        arma::uword ld_next, const float* w,
                        const float* d_next, float* d) {
  BackwardDotsImpl<float, 32>(m, n, ld, ld_next, w, d_next, d);
}
void BackwardDots(arma::uword m, arma::uword n, arma::uword ld,
                  arma::uword ld_next, const float* w, const float* d_next,
                  float* d) {
  WideVectors() ? BackwardDotsWide(m, n, ld, ld_next, w, d_next, d)
                : BackwardDotsNarrow(m, n, ld, ld_next, w, d_next, d);
}

// y += A x for one example (a Predict of one row), A m x n column-major with
// leading dimension lda, m >= kLanes<T, B>. The m outputs are covered by
// vector-sized chunks of rows at 0, L, 2L, ... (L = kLanes<T, B>) and, when L
// does not divide m, one more at m - L that overlaps the one before it, so
// every load stays inside its column and no row is left for scalar code.
// Up to kSweepChunks chunks stay in registers while one sweep over the n
// columns adds A[:, p] x[p] to them, in the order p = 0, 1, ..., n - 1, for
// each row. A row's result therefore does not depend on which chunk computed
// it, so the overlapped rows get the same value twice. Chunks that overlap
// must be in the same sweep (each sweep reads its y before it writes):
// the first sweep takes the remainder, so the last two chunks always share
// the last sweep.
// BLAS GEMV (OpenBLAS 0.3.21's dgemv_n) instead re-reads and re-writes y
// for every 4 columns, which made a [784,30] layer ~4x slower than
// this in BM_Feedforward/A/1 (BENCHMARKS.md section 5).
constexpr int kSweepChunks = 8;  // 8 accumulators: 16 ymm or 32 zmm hold them

template <typename T, int B, int R>
BACKPROP_INLINE void SweepColumns(arma::uword n, arma::uword lda, const T* a,
                                  const T* x, T* y, const arma::uword* row) {
  using V = typename VecOf<T, B>::type;
  V acc[R];
  for (int r = 0; r < R; ++r) acc[r] = Load<V>(y + row[r]);
  const T* col = a;
  for (arma::uword p = 0; p < n; ++p, col += lda) {
    const V xp = Splat<V>(x[p]);
    for (int r = 0; r < R; ++r) acc[r] += Load<V>(col + row[r]) * xp;
  }
  for (int r = 0; r < R; ++r) Store(y + row[r], acc[r]);
}

// SweepColumns for r chunks, 1 <= r <= R (the pattern of ForwardDispatch).
template <typename T, int B, int R>
BACKPROP_INLINE void SweepDispatch(int r, arma::uword n, arma::uword lda,
                                   const T* a, const T* x, T* y,
                                   const arma::uword* row) {
  if (r == R) {
    SweepColumns<T, B, R>(n, lda, a, x, y, row);
  } else if constexpr (R > 1) {
    SweepDispatch<T, B, R - 1>(r, n, lda, a, x, y, row);
  }
}

template <typename T, int B>
BACKPROP_INLINE void GemvByColumnsImpl(arma::uword m, arma::uword n, const T* a,
                                       arma::uword lda, const T* x, T* y) {
  constexpr arma::uword L = kLanes<T, B>;
  const arma::uword chunks = (m + L - 1) / L;
  auto chunk_row = [&](arma::uword c) {
    return c + 1 < chunks || m % L == 0 ? c * L : m - L;
  };
  arma::uword c = 0;
  while (c < chunks) {
    const arma::uword rest = chunks - c;
    const int r =
        static_cast<int>(c == 0 && rest % kSweepChunks != 0
                             ? rest % kSweepChunks
                             : std::min<arma::uword>(rest, kSweepChunks));
    arma::uword row[kSweepChunks];
    for (int i = 0; i < r; ++i) row[i] = chunk_row(c + i);
    SweepDispatch<T, B, kSweepChunks>(r, n, lda, a, x, y, row);
    c += static_cast<arma::uword>(r);
  }
}
BACKPROP_MULTIVERSION
void GemvByColumnsWide(arma::uword m, arma::uword n, const double* a,
                       arma::uword lda, const double* x, double* y) {
  GemvByColumnsImpl<double, 64>(m, n, a, lda, x, y);
}
BACKPROP_MULTIVERSION
void GemvByColumnsNarrow(arma::uword m, arma::uword n, const double* a,
                         arma::uword lda, const double* x, double* y) {
  GemvByColumnsImpl<double, 32>(m, n, a, lda, x, y);
}
void GemvByColumns(arma::uword m, arma::uword n, const double* a,
                   arma::uword lda, const double* x, double* y) {
  WideVectors() ? GemvByColumnsWide(m, n, a, lda, x, y)
                : GemvByColumnsNarrow(m, n, a, lda, x, y);
}
BACKPROP_MULTIVERSION
void GemvByColumnsWide(arma::uword m, arma::uword n, const float* a,
                       arma::uword lda, const float* x, float* y) {
  GemvByColumnsImpl<float, 64>(m, n, a, lda, x, y);
}
BACKPROP_MULTIVERSION
void GemvByColumnsNarrow(arma::uword m, arma::uword n, const float* a,
                         arma::uword lda, const float* x, float* y) {
  GemvByColumnsImpl<float, 32>(m, n, a, lda, x, y);
}
void GemvByColumns(arma::uword m, arma::uword n, const float* a,
                   arma::uword lda, const float* x, float* y) {
  WideVectors() ? GemvByColumnsWide(m, n, a, lda, x, y)
                : GemvByColumnsNarrow(m, n, a, lda, x, y);
}

}  // namespace

namespace internal {

template <typename T>
void Gemm(char trans_a, char trans_b, arma::uword m, arma::uword n,
          arma::uword k, T alpha, const T* a, arma::uword lda, const T* b,
          arma::uword ldb, T beta, T* c, arma::uword ldc) {
  const arma::blas_int bm = static_cast<arma::blas_int>(m);
  const arma::blas_int bn = static_cast<arma::blas_int>(n);
  const arma::blas_int bk = static_cast<arma::blas_int>(k);
  const arma::blas_int blda = static_cast<arma::blas_int>(lda);
  const arma::blas_int bldb = static_cast<arma::blas_int>(ldb);
  const arma::blas_int bldc = static_cast<arma::blas_int>(ldc);
  arma::blas::gemm<T>(&trans_a, &trans_b, &bm, &bn, &bk, &alpha, a, &blda, b,
                      &bldb, &beta, c, &bldc);
}

template <typename T>
void Gemv(arma::uword m, arma::uword n, const T* a, arma::uword lda,
          const T* x, T* y) {
  if (m >= kPadBytes / sizeof(T)) {  // a whole vector of either width
    GemvByColumns(m, n, a, lda, x, y);
    return;
  }
  // Fewer rows than one vector holds: BLAS.
  const char trans = 'N';
  const arma::blas_int bm = static_cast<arma::blas_int>(m);
  const arma::blas_int bn = static_cast<arma::blas_int>(n);
  const arma::blas_int blda = static_cast<arma::blas_int>(lda);
  const arma::blas_int one = 1;
  const T alpha = 1;
  const T beta = 1;
  arma::blas::gemv<T>(&trans, &bm, &bn, &alpha, a, &blda, x, &one, &beta, y,
                      &one);
}

template <typename T>
BatchWorkspace<T>::BatchWorkspace(const ModelSpec& spec, arma::uword max_m)
    : spec_(spec), max_m_(std::max<arma::uword>(max_m, 1)) {
  const size_t layers = spec.layer_sizes.size();
  z_.resize(layers);
  a_.resize(layers);
  delta_.resize(layers);
  for (size_t l = 1; l < layers; ++l) {
    z_[l].set_size(spec.layer_sizes[l], max_m_);
    a_[l].set_size(spec.layer_sizes[l], max_m_);
    delta_[l].set_size(spec.layer_sizes[l], max_m_);
  }
}

template <typename T>
void BatchWorkspace<T>::Forward(const Network<T>& net, const T* x,
                                arma::uword m) {
  x_ = x;
  const size_t L = spec_.layer_sizes.size() - 1;
  const T* a_prev = x;
  for (size_t l = 1; l <= L; ++l) {
    const arma::uword n = spec_.layer_sizes[l];
    const arma::uword n_prev = spec_.layer_sizes[l - 1];
    T* z = z_[l].memptr();
    // z^l = w^l a^{l-1} + b^l: b^l in every column, then the GEMM adds on.
    const T* b = net.b(l).memptr();
    for (arma::uword j = 0; j < m; ++j) {
      std::memcpy(z + j * n, b, n * sizeof(T));
    }
    if (m == 1) {
      // One example (a single Predict): GEMV reads w^l once, where GEMM
      // would first copy all of w^l into its packed layout.
      Gemv<T>(n, n_prev, net.w(l).memptr(), n, a_prev, z);
    } else {
      Gemm<T>('N', 'N', n, m, n_prev, T{1}, net.w(l).memptr(), n, a_prev,
              n_prev, T{1}, z, n);
    }
    // a^l = sigma(z^l)
    Activate(LayerActivation(spec_, l), z, a_[l].memptr(), n, m, n);
    a_prev = a_[l].memptr();
  }
}

template <typename T>
double BatchWorkspace<T>::CostSum(const T* y, arma::uword m) const {
  const size_t L = spec_.layer_sizes.size() - 1;
  const arma::uword n = spec_.layer_sizes[L];
  return OutputCostSum<T>(spec_, z_[L].memptr(), a_[L].memptr(), y, n, m, n, n);
}

template <typename T>
void BatchWorkspace<T>::Backward(const Network<T>& net, const T* y,
                                 arma::uword m) {
  const size_t L = spec_.layer_sizes.size() - 1;
  const arma::uword n_out = spec_.layer_sizes[L];
  OutputDelta<T>(spec_, a_[L].memptr(), y, delta_[L].memptr(), n_out, m, n_out,
                 n_out);  // BP1
  for (size_t l = L - 1; l >= 1; --l) {
    const arma::uword n = spec_.layer_sizes[l];
    const arma::uword n_next = spec_.layer_sizes[l + 1];
    // BP2: delta^l = ((w^{l+1})^T delta^{l+1}) (.) sigma'(z^l)
    Gemm<T>('T', 'N', n, m, n_next, T{1}, net.w(l + 1).memptr(), n_next,
            delta_[l + 1].memptr(), n_next, T{0}, delta_[l].memptr(), n);
    MultiplyByPrime(spec_.hidden_activation, a_[l].memptr(),
                       delta_[l].memptr(), n, m, n);
  }
}

template <typename T>
uint64_t BatchWorkspace<T>::CountSaturated(size_t l, arma::uword m) const {
  const arma::uword n = spec_.layer_sizes[l];
  return CountSaturatedIn(LayerActivation(spec_, l), a_[l].memptr(), n, m,
                             n);
}

template <typename T>
SgdEngine<T>::SgdEngine(const Network<T>& net, arma::uword max_m, double eta,
                        double lambda_over_n, double mu)
    : spec_(net.spec()),
      max_m_(std::max<arma::uword>(max_m, 1)),
      eta_(static_cast<T>(eta)),
      decay_(static_cast<T>(lambda_over_n)),
      mu_(static_cast<T>(mu)),
      small_(max_m_ <= kMaxSmallBatch) {
  const size_t layers = spec_.layer_sizes.size();
  n_.resize(layers);
  ld_.resize(layers);
  for (size_t l = 0; l < layers; ++l) {
    n_[l] = spec_.layer_sizes[l];
    const arma::uword lanes = kPadBytes / sizeof(T);
    ld_[l] = l == 0 ? n_[0] : (n_[l] + lanes - 1) / lanes * lanes;
  }
  w_.resize(layers);
  b_.resize(layers);
  v_w_.resize(layers);
  v_b_.resize(layers);
  g_w_.resize(layers);
  z_.resize(layers);
  a_.resize(layers);
  delta_.resize(layers);
  for (size_t l = 1; l < layers; ++l) {
    w_[l].zeros(ld_[l], n_[l - 1]);
    w_[l].rows(0, n_[l] - 1) = net.w(l);
    b_[l].zeros(ld_[l]);
    b_[l].rows(0, n_[l] - 1) = net.b(l);
    v_w_[l].zeros(ld_[l], n_[l - 1]);
    v_b_[l].zeros(ld_[l]);
    if (!small_) g_w_[l].zeros(ld_[l], n_[l - 1]);
    z_[l].zeros(ld_[l], max_m_);
    a_[l].zeros(ld_[l], max_m_);
    delta_[l].zeros(ld_[l], max_m_);
  }
  if (!small_) x_.zeros(n_[0], max_m_);
  y_.zeros(n_.back(), max_m_);
  cols_.resize(layers);
  cols_[0].assign(max_m_, nullptr);
  for (size_t l = 1; l < layers; ++l) {
    for (arma::uword j = 0; j < max_m_; ++j) {
      cols_[l].push_back(a_[l].colptr(j));
    }
  }
  grad_norm_.assign(layers, 0.0);
  saturated_.assign(layers, 0);
}

template <typename T>
void SgdEngine<T>::ResetStats() {
  std::fill(grad_norm_.begin(), grad_norm_.end(), 0.0);
  std::fill(saturated_.begin(), saturated_.end(), 0);
}

template <typename T>
void SgdEngine<T>::CopyTo(Network<T>& net) const {
  for (size_t l = 1; l < n_.size(); ++l) {
    net.mutable_w(l) = w_[l].rows(0, n_[l] - 1);
    net.mutable_b(l) = b_[l].rows(0, n_[l] - 1);
  }
}

template <typename T>
void SgdEngine<T>::Forward(arma::uword m) {
  const size_t L = n_.size() - 1;
  if (!small_) {
    // BLAS needs the batch as one matrix: gather its columns.
    for (arma::uword j = 0; j < m; ++j) {
      std::memcpy(x_.colptr(j), cols_[0][j], n_[0] * sizeof(T));
    }
  }
  for (size_t l = 1; l <= L; ++l) {
    T* z = z_[l].memptr();
    // z^l = w^l a^{l-1} + b^l
    if (small_) {
      ForwardSmall(m, n_[l - 1], ld_[l], w_[l].memptr(), b_[l].memptr(),
                   cols_[l - 1].data(), z);
    } else {
      // Large batches: BLAS, whose GEMMs use every OpenBLAS thread.
      const T* a_prev = l == 1 ? x_.memptr() : a_[l - 1].memptr();
      for (arma::uword j = 0; j < m; ++j) {
        std::memcpy(z + j * ld_[l], b_[l].memptr(), ld_[l] * sizeof(T));
      }
      Gemm<T>('N', 'N', ld_[l], m, n_[l - 1], T{1}, w_[l].memptr(), ld_[l],
              a_prev, ld_[l - 1], T{1}, z, ld_[l]);
    }
    // a^l = sigma(z^l)
    Activate(LayerActivation(spec_, l), z, a_[l].memptr(), n_[l], m, ld_[l]);
    saturated_[l] += CountSaturatedIn(LayerActivation(spec_, l),
                                         a_[l].memptr(), n_[l], m, ld_[l]);
  }
}

template <typename T>
void SgdEngine<T>::Backward(arma::uword m) {
  const size_t L = n_.size() - 1;
  OutputDelta<T>(spec_, a_[L].memptr(), y_.memptr(), delta_[L].memptr(), n_[L],
                 m, ld_[L], n_[L]);  // BP1
  for (size_t l = L - 1; l >= 1; --l) {
    // BP2: delta^l = ((w^{l+1})^T delta^{l+1}) (.) sigma'(z^l); padded rows
    // of w and delta are zero, so the sums may run over them.
    if (small_) {
      BackwardDots(m, n_[l], ld_[l], ld_[l + 1], w_[l + 1].memptr(),
                   delta_[l + 1].memptr(), delta_[l].memptr());
    } else {
      Gemm<T>('T', 'N', n_[l], m, ld_[l + 1], T{1}, w_[l + 1].memptr(),
              ld_[l + 1], delta_[l + 1].memptr(), ld_[l + 1], T{0},
              delta_[l].memptr(), ld_[l]);
    }
    MultiplyByPrime(spec_.hidden_activation, a_[l].memptr(),
                       delta_[l].memptr(), n_[l], m, ld_[l]);
  }
}

template <typename T>
void SgdEngine<T>::Update(arma::uword m) {
  const size_t L = n_.size() - 1;
  const T inv_m = static_cast<T>(1.0 / static_cast<double>(m));
  for (size_t l = 1; l <= L; ++l) {
    const arma::uword ld = ld_[l];
    const arma::uword k = n_[l - 1];
    const T* a_prev = l == 1 ? x_.memptr() : a_[l - 1].memptr();
    T* d = delta_[l].memptr();
    // delta / m, so that BP3/BP4 summed over the batch give the averages.
    for (arma::uword i = 0; i < ld * m; ++i) d[i] *= inv_m;
    double norm2 = 0;
    if (small_) {
      // SGD update fused into BP4: g_w = sum_x delta a^T / m + decay w.
      norm2 = UpdateSmall(m, k, ld, w_[l].memptr(), v_w_[l].memptr(), d,
                          cols_[l - 1].data(), eta_, decay_, mu_);
    } else {
      // BP4 into g_w by BLAS, then the SGD update element by element.
      T* g = g_w_[l].memptr();
      Gemm<T>('N', 'T', ld, k, m, T{1}, d, ld, a_prev, ld_[l - 1], T{0}, g, ld);
      norm2 = ApplyGradient(ld * k, g, w_[l].memptr(), v_w_[l].memptr(), eta_,
                            decay_, mu_);
    }
    grad_norm_[l] += std::sqrt(norm2);
    // BP3 and the bias update: g_b = sum_x delta / m; v <- mu v - eta g_b.
    T* b = b_[l].memptr();
    T* vb = v_b_[l].memptr();
    for (arma::uword i = 0; i < n_[l]; ++i) {
      T g = 0;
      for (arma::uword j = 0; j < m; ++j) g += d[j * ld + i];
      vb[i] = mu_ * vb[i] - eta_ * g;
      b[i] += vb[i];
    }
  }
}

template <typename T>
double SgdEngine<T>::Step(arma::uword m, bool want_cost) {
  Forward(m);
  const size_t L = n_.size() - 1;
  double cost = 0;
  if (want_cost) {
    cost = OutputCostSum<T>(spec_, z_[L].memptr(), a_[L].memptr(), y_.memptr(),
                            n_[L], m, ld_[L], n_[L]);
  }
  Backward(m);  // every delta uses the weights before this step's update
  Update(m);
  return cost;
}

template class SgdEngine<double>;
template class SgdEngine<float>;

template class BatchWorkspace<double>;
template class BatchWorkspace<float>;
template void Gemv<double>(arma::uword, arma::uword, const double*,
                           arma::uword, const double*, double*);
template void Gemv<float>(arma::uword, arma::uword, const float*, arma::uword,
                          const float*, float*);
template void Gemm<double>(char, char, arma::uword, arma::uword, arma::uword,
                           double, const double*, arma::uword, const double*,
                           arma::uword, double, double*, arma::uword);
template void Gemm<float>(char, char, arma::uword, arma::uword, arma::uword,
                          float, const float*, arma::uword, const float*,
                          arma::uword, float, float*, arma::uword);

}  // namespace internal

template <typename T>
absl::StatusOr<Network<T>> Network<T>::Create(const ModelSpec& spec) {
  if (absl::Status s = ValidateSpec(spec, UINT64_MAX); !s.ok()) return s;
  if (spec.dtype != DTypeOf<T>()) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec dtype ", DTypeName(spec.dtype),
                     " does not match the network's element type ",
                     DTypeName(DTypeOf<T>())));
  }
  if (absl::Status s = CheckWidths(spec); !s.ok()) return s;
  Network<T> net;
  net.spec_ = spec;
  const size_t layers = spec.layer_sizes.size();
  // Draws are made in double and then rounded to T, so float and double
  // networks from the same seed agree up to rounding. Order: for l = 1..L,
  // w(l) column-major, then b(l).
  std::mt19937_64 rng(spec.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  try {
    net.w_.resize(layers);
    net.b_.resize(layers);
    for (size_t l = 1; l < layers; ++l) {
      const double n_in = spec.layer_sizes[l - 1];
      // STANDARD_NORMAL: w ~ N(0, 1) (network.py); SCALED_NORMAL:
      // w ~ N(0, 1/n_in) (network2.py). Biases are N(0, 1) in both.
      const double scale = spec.initializer == Initializer::kScaledNormal
                               ? 1.0 / std::sqrt(n_in)
                               : 1.0;
      net.w_[l].set_size(spec.layer_sizes[l], spec.layer_sizes[l - 1]);
      net.w_[l].imbue([&]() { return static_cast<T>(normal(rng) * scale); });
      net.b_[l].set_size(spec.layer_sizes[l]);
      net.b_[l].imbue([&]() { return static_cast<T>(normal(rng)); });
    }
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        "not enough memory for the network's parameters");
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate the network's parameters: ", e.what()));
  }
  return net;
}

template <typename T>
absl::StatusOr<Network<T>> Network<T>::FromParameters(const ModelSpec& spec,
                                                      std::vector<Mat> w,
                                                      std::vector<Col> b) {
  if (absl::Status s = ValidateSpec(spec, UINT64_MAX); !s.ok()) return s;
  if (spec.dtype != DTypeOf<T>()) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec dtype ", DTypeName(spec.dtype),
                     " does not match the network's element type ",
                     DTypeName(DTypeOf<T>())));
  }
  if (absl::Status s = CheckWidths(spec); !s.ok()) return s;
  const size_t weight_layers = spec.layer_sizes.size() - 1;
  if (w.size() != weight_layers || b.size() != weight_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected parameters for ", weight_layers, " weight layers, got ",
        w.size(), " weight matrices and ", b.size(), " bias vectors"));
  }
  for (size_t i = 0; i < weight_layers; ++i) {
    const uint32_t rows = spec.layer_sizes[i + 1];
    const uint32_t cols = spec.layer_sizes[i];
    if (w[i].n_rows != rows || w[i].n_cols != cols) {
      return absl::InvalidArgumentError(
          absl::StrCat("layers[", i, "].weights is ", w[i].n_rows, "x",
                       w[i].n_cols, " but the spec needs ", rows, "x", cols));
    }
    if (b[i].n_elem != rows) {
      return absl::InvalidArgumentError(
          absl::StrCat("layers[", i, "].biases has ", b[i].n_elem,
                       " entries but the spec needs ", rows));
    }
    if (!w[i].is_finite() || !b[i].is_finite()) {
      return absl::InvalidArgumentError(
          absl::StrCat("layers[", i, "] has a NaN or infinite weight or bias"));
    }
  }
  Network<T> net;
  net.spec_ = spec;
  net.w_.resize(weight_layers + 1);
  net.b_.resize(weight_layers + 1);
  for (size_t i = 0; i < weight_layers; ++i) {
    net.w_[i + 1] = std::move(w[i]);
    net.b_[i + 1] = std::move(b[i]);
  }
  return net;
}

template <typename T>
bool Network<T>::AllFinite() const {
  for (size_t l = 1; l < w_.size(); ++l) {
    if (!w_[l].is_finite() || !b_[l].is_finite()) return false;
  }
  return true;
}

template <typename T>
absl::StatusOr<typename Network<T>::Mat> Network<T>::Feedforward(
    const Mat& x) const {
  if (absl::Status s = CheckBatch<T>(*this, x, nullptr); !s.ok()) return s;
  const size_t L = num_layers() - 1;
  const arma::uword n_out = output_size();
  Mat out(n_out, x.n_cols);
  internal::BatchWorkspace<T> ws(spec_, std::min(kChunk, x.n_cols));
  for (arma::uword first = 0; first < x.n_cols; first += ws.max_m()) {
    const arma::uword m = std::min(ws.max_m(), x.n_cols - first);
    ws.Forward(*this, x.colptr(first), m);
    std::memcpy(out.colptr(first), ws.a(L), n_out * m * sizeof(T));
  }
  return out;
}

template <typename T>
absl::StatusOr<Gradients<T>> Network<T>::Backprop(const Mat& x,
                                                  const Mat& y) const {
  if (absl::Status s = CheckBatch<T>(*this, x, &y); !s.ok()) return s;
  const size_t L = num_layers() - 1;
  Gradients<T> g;
  g.nabla_w.resize(L + 1);
  g.nabla_b.resize(L + 1);
  for (size_t l = 1; l <= L; ++l) {
    g.nabla_w[l].zeros(w_[l].n_rows, w_[l].n_cols);
    g.nabla_b[l].zeros(b_[l].n_elem);
  }
  internal::BatchWorkspace<T> ws(spec_, std::min(kChunk, x.n_cols));
  double cost = 0;
  for (arma::uword first = 0; first < x.n_cols; first += ws.max_m()) {
    const arma::uword m = std::min(ws.max_m(), x.n_cols - first);
    ws.Forward(*this, x.colptr(first), m);
    cost += ws.CostSum(y.colptr(first), m);
    ws.Backward(*this, y.colptr(first), m);  // BP1, BP2
    for (size_t l = 1; l <= L; ++l) {
      const arma::uword n = spec_.layer_sizes[l];
      const arma::uword n_prev = spec_.layer_sizes[l - 1];
      // BP4: dC/dw^l = delta^l (a^{l-1})^T, summed over the chunk's columns.
      internal::Gemm<T>('N', 'T', n, n_prev, m, T{1}, ws.delta(l), n,
                        ws.a(l - 1), n_prev, T{1}, g.nabla_w[l].memptr(), n);
      // BP3: dC/db^l = delta^l, summed over the chunk's columns.
      T* nb = g.nabla_b[l].memptr();
      const T* d = ws.delta(l);
      for (arma::uword j = 0; j < m; ++j) {
        for (arma::uword i = 0; i < n; ++i) nb[i] += d[j * n + i];
      }
    }
  }
  // Average over the m examples: C = 1/m sum_x C_x and likewise the gradient.
  const T inv_m = static_cast<T>(1.0 / static_cast<double>(x.n_cols));
  for (size_t l = 1; l <= L; ++l) {
    g.nabla_w[l] *= inv_m;
    g.nabla_b[l] *= inv_m;
  }
  g.cost = cost / static_cast<double>(x.n_cols);
  return g;
}

template <typename T>
absl::StatusOr<double> Network<T>::Cost(const Mat& x, const Mat& y) const {
  if (absl::Status s = CheckBatch<T>(*this, x, &y); !s.ok()) return s;
  internal::BatchWorkspace<T> ws(spec_, std::min(kChunk, x.n_cols));
  return ChunkedCost<T>(*this, ws, x, y);
}

template <typename T>
absl::StatusOr<GradientCheckResult> Network<T>::CheckGradients(
    const Mat& x, const Mat& y, double eps, uint32_t samples,
    const std::function<absl::Status()>& stop) const {
  if (absl::Status s = CheckBatch<T>(*this, x, &y); !s.ok()) return s;
  if (!std::isfinite(eps) || eps <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the finite-difference step must be finite and > 0, "
                     "got ",
                     eps));
  }
  Network<double> d = Cast<double>();
  const arma::mat xd = arma::conv_to<arma::mat>::from(x);
  const arma::mat yd = arma::conv_to<arma::mat>::from(y);
  absl::StatusOr<Gradients<double>> g = d.Backprop(xd, yd);
  if (!g.ok()) return g.status();

  const size_t L = num_layers() - 1;
  uint64_t total = 0;
  for (size_t l = 1; l <= L; ++l) total += w_[l].n_elem + b_[l].n_elem;
  const uint64_t s = std::min<uint64_t>(samples == 0 ? 100 : samples, total);
  GradientCheckResult result;
  for (uint64_t i = 0; i < s; ++i) {
    if (stop) {
      if (absl::Status st = stop(); !st.ok()) return st;
    }
    uint64_t index =
        static_cast<uint64_t>(static_cast<unsigned __int128>(i) * total / s);
    // Locate parameter `index` in the order w(1), b(1), w(2), b(2), ...
    double* p = nullptr;
    double analytic = 0;
    for (size_t l = 1; l <= L && p == nullptr; ++l) {
      if (index < d.w_[l].n_elem) {
        p = d.w_[l].memptr() + index;
        analytic = g->nabla_w[l][index];
      } else if (index - d.w_[l].n_elem < d.b_[l].n_elem) {
        index -= d.w_[l].n_elem;
        p = d.b_[l].memptr() + index;
        analytic = g->nabla_b[l][index];
      } else {
        index -= d.w_[l].n_elem + d.b_[l].n_elem;
      }
    }
    const double saved = *p;
    *p = saved + eps;
    const long double c_plus = LongDoubleCost(d, xd, yd);
    *p = saved - eps;
    const long double c_minus = LongDoubleCost(d, xd, yd);
    *p = saved;
    const double fd = static_cast<double>((c_plus - c_minus) / (2.0L * eps));
    const double abs_error = std::abs(analytic - fd);
    const double scale = std::max(std::abs(analytic), std::abs(fd));
    const double rel_error = scale > kCheckFloor ? abs_error / scale : 0.0;
    result.max_abs_error = std::max(result.max_abs_error, abs_error);
    result.max_rel_error = std::max(result.max_rel_error, rel_error);
    ++result.parameters_checked;
  }
  return result;
}

template <typename T>
template <typename U>
Network<U> Network<T>::Cast() const {
  Network<U> out;
  out.spec_ = spec_;
  out.spec_.dtype = DTypeOf<U>();
  out.w_.resize(w_.size());
  out.b_.resize(b_.size());
  for (size_t l = 1; l < w_.size(); ++l) {
    out.w_[l] = arma::conv_to<arma::Mat<U>>::from(w_[l]);
    out.b_[l] = arma::conv_to<arma::Col<U>>::from(b_[l]);
  }
  return out;
}

absl::StatusOr<AnyNetwork> CreateAnyNetwork(const ModelSpec& spec) {
  if (spec.dtype == DType::kFloat32) {
    absl::StatusOr<Network<float>> net = Network<float>::Create(spec);
    if (!net.ok()) return net.status();
    return AnyNetwork(std::move(*net));
  }
  absl::StatusOr<Network<double>> net = Network<double>::Create(spec);
  if (!net.ok()) return net.status();
  return AnyNetwork(std::move(*net));
}

template class Network<double>;
template class Network<float>;
template Network<float> Network<double>::Cast<float>() const;
template Network<double> Network<double>::Cast<double>() const;
template Network<double> Network<float>::Cast<double>() const;
template Network<float> Network<float>::Cast<float>() const;

}  // namespace backprop

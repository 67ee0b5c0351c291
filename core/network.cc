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

namespace backprop {
namespace {

// Columns per pass when Feedforward/Backprop/Cost walk a large batch, so
// their buffers stay small whatever m is.
constexpr arma::uword kChunk = 1024;

// Threshold below which |sigma'(z)| counts as saturated (trainer.h).
constexpr double kSaturated = 0.01;

// log(1 + e^t) without overflow or log(0).
inline double Softplus(double t) {
  return std::max(t, 0.0) + std::log1p(std::exp(-std::abs(t)));
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

// sigma(z) of a hidden or output layer, z and a both n x m (may alias).
template <typename T>
void Activate(Activation f, const T* z, T* a, arma::uword n, arma::uword m) {
  const arma::uword count = n * m;
  switch (f) {
    case Activation::kSigmoid:
      for (arma::uword i = 0; i < count; ++i) {
        a[i] = T{1} / (T{1} + std::exp(-z[i]));
      }
      return;
    case Activation::kTanh:
      for (arma::uword i = 0; i < count; ++i) a[i] = std::tanh(z[i]);
      return;
    case Activation::kRelu:
      for (arma::uword i = 0; i < count; ++i) a[i] = z[i] > T{0} ? z[i] : T{0};
      return;
    case Activation::kIdentity:
      if (a != z) std::memcpy(a, z, count * sizeof(T));
      return;
    case Activation::kSoftmax:
      // Per column, after subtracting the column's maximum so exp never
      // overflows; the result is mathematically unchanged.
      for (arma::uword j = 0; j < m; ++j) {
        const T* zc = z + j * n;
        T* ac = a + j * n;
        T top = zc[0];
        for (arma::uword i = 1; i < n; ++i) top = std::max(top, zc[i]);
        T sum = 0;
        for (arma::uword i = 0; i < n; ++i) {
          ac[i] = std::exp(zc[i] - top);
          sum += ac[i];
        }
        const T inv = T{1} / sum;
        for (arma::uword i = 0; i < n; ++i) ac[i] *= inv;
      }
      return;
  }
}

// d *= sigma'(z), with sigma' written in terms of a = sigma(z) (exact for
// every activation allowed where sigma' is needed; RELU's sigma'(0) is 0
// because a > 0 exactly when z > 0).
template <typename T>
void MultiplyByPrime(Activation f, const T* a, T* d, arma::uword count) {
  switch (f) {
    case Activation::kSigmoid:
      for (arma::uword i = 0; i < count; ++i) d[i] *= a[i] * (T{1} - a[i]);
      return;
    case Activation::kTanh:
      for (arma::uword i = 0; i < count; ++i) d[i] *= T{1} - a[i] * a[i];
      return;
    case Activation::kRelu:
      for (arma::uword i = 0; i < count; ++i) {
        d[i] = a[i] > T{0} ? d[i] : T{0};
      }
      return;
    case Activation::kIdentity:
    case Activation::kSoftmax:  // only reached with CROSS_ENTROPY: unused
      return;
  }
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
    Gemm<T>('N', 'N', n, m, n_prev, T{1}, net.w(l).memptr(), n, a_prev, n_prev,
            T{1}, z, n);
    const Activation f =
        l == L ? spec_.output_activation : spec_.hidden_activation;
    Activate<T>(f, z, a_[l].memptr(), n, m);  // a^l = sigma(z^l)
    a_prev = a_[l].memptr();
  }
}

template <typename T>
double BatchWorkspace<T>::CostSum(const T* y, arma::uword m) const {
  const size_t L = spec_.layer_sizes.size() - 1;
  const arma::uword n = spec_.layer_sizes[L];
  const T* a = a_[L].memptr();
  const T* z = z_[L].memptr();
  const arma::uword count = n * m;
  double total = 0;
  if (spec_.cost == Cost::kQuadratic) {
    // C_x = 1/2 ||y - a^L||^2
    for (arma::uword i = 0; i < count; ++i) {
      const double d = static_cast<double>(y[i]) - static_cast<double>(a[i]);
      total += 0.5 * d * d;
    }
  } else if (spec_.output_activation == Activation::kSigmoid) {
    // C_x = -sum_j [y ln a + (1 - y) ln(1 - a)] with ln a = -softplus(-z)
    // and ln(1 - a) = -softplus(z): never log(0), even when a rounds to 0/1.
    for (arma::uword i = 0; i < count; ++i) {
      const double yi = y[i];
      const double zi = z[i];
      total += yi * Softplus(-zi) + (1.0 - yi) * Softplus(zi);
    }
  } else {
    // Softmax: C_x = -sum_j y_j ln a_j with ln a_j = z_j - logsumexp(z).
    for (arma::uword j = 0; j < m; ++j) {
      const T* zc = z + j * n;
      const T* yc = y + j * n;
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

template <typename T>
void BatchWorkspace<T>::Backward(const Network<T>& net, const T* y,
                                 arma::uword m) {
  const size_t L = spec_.layer_sizes.size() - 1;
  {
    const arma::uword count = spec_.layer_sizes[L] * m;
    const T* a = a_[L].memptr();
    T* d = delta_[L].memptr();
    for (arma::uword i = 0; i < count; ++i) d[i] = a[i] - y[i];
    // BP1: delta^L = (a^L - y) (.) sigma'(z^L) for QUADRATIC; for
    // CROSS_ENTROPY (sigmoid or softmax) sigma' cancels: delta^L = a^L - y.
    if (spec_.cost == Cost::kQuadratic) {
      MultiplyByPrime<T>(spec_.output_activation, a, d, count);
    }
  }
  for (size_t l = L - 1; l >= 1; --l) {
    const arma::uword n = spec_.layer_sizes[l];
    const arma::uword n_next = spec_.layer_sizes[l + 1];
    // BP2: delta^l = ((w^{l+1})^T delta^{l+1}) (.) sigma'(z^l)
    Gemm<T>('T', 'N', n, m, n_next, T{1}, net.w(l + 1).memptr(), n_next,
            delta_[l + 1].memptr(), n_next, T{0}, delta_[l].memptr(), n);
    MultiplyByPrime<T>(spec_.hidden_activation, a_[l].memptr(),
                       delta_[l].memptr(), n * m);
  }
}

template <typename T>
uint64_t BatchWorkspace<T>::CountSaturated(size_t l, arma::uword m) const {
  const size_t L = spec_.layer_sizes.size() - 1;
  const Activation f =
      l == L ? spec_.output_activation : spec_.hidden_activation;
  const arma::uword count = spec_.layer_sizes[l] * m;
  const T* a = a_[l].memptr();
  uint64_t saturated = 0;
  if (f == Activation::kSigmoid) {
    for (arma::uword i = 0; i < count; ++i) {
      saturated += a[i] * (T{1} - a[i]) < T(kSaturated);
    }
  } else if (f == Activation::kTanh) {
    for (arma::uword i = 0; i < count; ++i) {
      saturated += T{1} - a[i] * a[i] < T(kSaturated);
    }
  }
  return saturated;
}

template class BatchWorkspace<double>;
template class BatchWorkspace<float>;
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
    const Mat& x, const Mat& y, double eps, uint32_t samples) const {
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
  internal::BatchWorkspace<double> ws(d.spec_, std::min(kChunk, x.n_cols));
  GradientCheckResult result;
  for (uint64_t i = 0; i < s; ++i) {
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
    const double c_plus = ChunkedCost<double>(d, ws, xd, yd);
    *p = saved - eps;
    const double c_minus = ChunkedCost<double>(d, ws, xd, yd);
    *p = saved;
    const double fd = (c_plus - c_minus) / (2 * eps);
    const double abs_error = std::abs(analytic - fd);
    const double rel_error =
        abs_error / std::max({std::abs(analytic), std::abs(fd), 1e-8});
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

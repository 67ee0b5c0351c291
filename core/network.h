// A fully-connected network and the four equations of backpropagation
// (Nielsen, NNDL ch. 2), evaluated for a whole mini-batch at once: one example
// per COLUMN, so x is n_0 x m and every a^l, z^l, delta^l is n_l x m.
//
// Layer numbering follows the book with the input as layer 0: w(l) maps
// a^{l-1} to z^l for l = 1..L, where L = num_layers() - 1 is the output layer.
// (API.md's layers[0] is w(1); the book's l = 2.)
#ifndef BACKPROP_CORE_NETWORK_H_
#define BACKPROP_CORE_NETWORK_H_

#include <cstdint>
#include <functional>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <armadillo>

#include "core/spec.h"

namespace backprop {

// Gradients of the average cost C = 1/m sum_x C_x over m examples.
// nabla_w[l] has w(l)'s shape, nabla_b[l] has b(l)'s; slot 0 is empty.
template <typename T>
struct Gradients {
  double cost = 0;  // the data cost C (no L2 term)
  std::vector<arma::Mat<T>> nabla_w;
  std::vector<arma::Col<T>> nabla_b;
};

struct GradientCheckResult {
  uint32_t parameters_checked = 0;
  double max_abs_error = 0;
  double max_rel_error = 0;
};

template <typename T>
class Network {
 public:
  using Mat = arma::Mat<T>;
  using Col = arma::Col<T>;

  // Weights from spec.initializer and a std::mt19937_64 seeded with spec.seed:
  // the same spec gives bitwise-identical weights. Validates the spec with no
  // parameter limit (callers check their limit with ValidateSpec first).
  // spec.dtype must match T (kInvalidArgument otherwise).
  static absl::StatusOr<Network> Create(const ModelSpec& spec);

  // Given parameters in API order: w[i], b[i] belong to layer l = i + 1.
  // kInvalidArgument unless there is one per weight layer with exactly the
  // spec's shapes and every value is finite.
  static absl::StatusOr<Network> FromParameters(const ModelSpec& spec,
                                                std::vector<Mat> w,
                                                std::vector<Col> b);

  const ModelSpec& spec() const { return spec_; }
  size_t num_layers() const { return spec_.layer_sizes.size(); }  // L + 1
  uint32_t input_size() const { return spec_.layer_sizes.front(); }
  uint32_t output_size() const { return spec_.layer_sizes.back(); }
  const Mat& w(size_t l) const { return w_[l]; }  // 1 <= l <= L
  const Col& b(size_t l) const { return b_[l]; }
  Mat& mutable_w(size_t l) { return w_[l]; }
  Col& mutable_b(size_t l) { return b_[l]; }
  bool AllFinite() const;

  // a^L for x (n_0 x m). kInvalidArgument if x.n_rows != n_0 or m == 0.
  absl::StatusOr<Mat> Feedforward(const Mat& x) const;

  // C and its gradient (BP1-BP4), averaged over the m columns of x.
  // y: n_L x m targets. kInvalidArgument on shape mismatch or m == 0.
  absl::StatusOr<Gradients<T>> Backprop(const Mat& x, const Mat& y) const;

  // The data cost C = 1/m sum_x C_x only. Same errors as Backprop.
  absl::StatusOr<double> Cost(const Mat& x, const Mat& y) const;

  // Compares Backprop's gradient with central differences
  // (C(p + eps) - C(p - eps)) / (2 eps), computed in float64 on a float64
  // copy of these weights, for `samples` parameters (0 = 100, capped at the
  // parameter count) chosen by a fixed rule (evenly spaced over all
  // parameters in layer order: w(1) column-major, b(1), w(2), b(2), ...;
  // sample i of s out of P parameters is parameter floor(i * P / s)).
  // g is Backprop's gradient of the same float64 copy, so the check tests the
  // equations rather than float32 rounding. For one parameter,
  //   abs error = |g - fd|,  rel error = |g - fd| / max(|g|, |fd|)
  // (0 when both |g| and |fd| are below 1e-12). fd comes from a second,
  // independent code path: the cost evaluated in long double with plain
  // loops, so its rounding noise (~1e-19 |C| / eps) stays far below the
  // errors the check looks for.
  // kInvalidArgument: shapes as for Backprop, or eps not finite and > 0.
  // `stop`, when given, is asked before each sampled parameter; once it
  // returns a non-OK status the check ends with that status (a server's time
  // budget or a cancelled call: one sample costs two long-double passes over
  // every example, so a big check can run for minutes).
  absl::StatusOr<GradientCheckResult> CheckGradients(
      const Mat& x, const Mat& y, double eps, uint32_t samples,
      const std::function<absl::Status()>& stop = nullptr) const;

  // A copy in the other element type (used by the gradient check and tests).
  template <typename U>
  Network<U> Cast() const;

 private:
  template <typename U>
  friend class Network;
  Network() = default;

  ModelSpec spec_;
  std::vector<Mat> w_;  // slot 0 empty
  std::vector<Col> b_;  // slot 0 empty
};

// A model of either element type (ModelSpec.dtype decides which).
using AnyNetwork = std::variant<Network<double>, Network<float>>;

// Creates the network of spec.dtype's element type.
absl::StatusOr<AnyNetwork> CreateAnyNetwork(const ModelSpec& spec);

namespace internal {

// Engine internals shared by Network and Train (not for other callers): the
// per-batch buffers and the batched BP1-BP4 kernels, so that the equations
// exist once. Every buffer is allocated in the constructor; the member
// functions allocate nothing. Buffers are column-major with max_m columns, of
// which a call uses the first m (leading dimension = the layer width).
template <typename T>
class BatchWorkspace {
 public:
  // Buffers for up to max_m >= 1 examples of spec's layer widths.
  BatchWorkspace(const ModelSpec& spec, arma::uword max_m);

  arma::uword max_m() const { return max_m_; }
  // z^l, a^l, delta^l of layer l = 1..L (n_l x max_m); a(0) is the x that
  // the last Forward used.
  T* z(size_t l) { return z_[l].memptr(); }
  T* a(size_t l) { return l == 0 ? const_cast<T*>(x_) : a_[l].memptr(); }
  T* delta(size_t l) { return delta_[l].memptr(); }

  // Feedforward of x (n_0 x m, leading dimension n_0), 1 <= m <= max_m.
  // x must stay alive until the last use of a(0).
  void Forward(const Network<T>& net, const T* x, arma::uword m);
  // After Forward: sum over the m examples of C_x (in double) for targets y
  // (n_L x m).
  double CostSum(const T* y, arma::uword m) const;
  // After Forward: delta^L (BP1) and delta^l for l = L-1..1 (BP2).
  void Backward(const Network<T>& net, const T* y, arma::uword m);
  // After Forward: how many of layer l's n_l x m activations are saturated,
  // |sigma'(z)| < 0.01 (0 unless the layer's activation is SIGMOID or TANH).
  uint64_t CountSaturated(size_t l, arma::uword m) const;

 private:
  ModelSpec spec_;
  arma::uword max_m_;
  const T* x_ = nullptr;
  std::vector<arma::Mat<T>> z_, a_, delta_;  // slot 0 unused
};

// One SGD run's working state for Train: the parameters in padded copies
// (rows rounded up to a whole SIMD vector, padding kept at zero), the
// velocities, and every per-batch buffer, all allocated in the constructor;
// Step allocates nothing. With max_m <= kMaxSmallBatch every step uses
// register-blocked kernels with the update fused into the weight-gradient
// product (no BLAS packing, no gradient temporary); larger max_m call BLAS.
template <typename T>
class SgdEngine {
 public:
  static constexpr arma::uword kMaxSmallBatch = 16;

  // eta, lambda_over_n, mu as in API.md's SGD update; velocities start at 0.
  SgdEngine(const Network<T>& net, arma::uword max_m, double eta,
            double lambda_over_n, double mu);

  // Input j < max_m of the batch: n_0 values that must stay unchanged until
  // Step returns (read in place, not copied, on the small-batch path).
  void SetInput(arma::uword j, const T* x) { cols_[0][j] = x; }
  // Column j < max_m of the batch targets (n_L values).
  T* y_column(arma::uword j) { return y_.colptr(j); }

  // Feedforward, BP1-BP4 and the SGD update on the first m columns. Returns
  // the sum over the m examples of C_x (in double) when want_cost, else 0.
  double Step(arma::uword m, bool want_cost);

  // Since the last ResetStats, per layer l = 1..L: the sum over batches of
  // ||g_w||_F (with the L2 term) and the count of saturated activations.
  const std::vector<double>& gradient_norm_sum() const { return grad_norm_; }
  const std::vector<uint64_t>& saturated() const { return saturated_; }
  void ResetStats();

  // Writes the current weights and biases into net (same spec).
  void CopyTo(Network<T>& net) const;

 private:
  void Forward(arma::uword m);
  void Backward(arma::uword m);
  void Update(arma::uword m);

  ModelSpec spec_;
  std::vector<arma::uword> n_, ld_;  // true and padded width per layer
  arma::uword max_m_;
  T eta_, decay_, mu_;
  bool small_;
  std::vector<arma::Mat<T>> w_, v_w_, g_w_;  // ld_l x n_{l-1}
  std::vector<arma::Col<T>> b_, v_b_;        // ld_l
  std::vector<arma::Mat<T>> z_, a_, delta_;  // ld_l x max_m
  arma::Mat<T> x_, y_;                       // n_0 x max_m, n_L x max_m
  // Column pointers of each layer's a^l for the batch; cols_[0] = inputs.
  std::vector<std::vector<const T*>> cols_;
  std::vector<double> grad_norm_;
  std::vector<uint64_t> saturated_;
};

// C = alpha * op(A) * op(B) + beta * C with BLAS's column-major conventions
// (trans 'N' or 'T'). Dimensions must fit in the BLAS integer type.
template <typename T>
void Gemm(char trans_a, char trans_b, arma::uword m, arma::uword n,
          arma::uword k, T alpha, const T* a, arma::uword lda, const T* b,
          arma::uword ldb, T beta, T* c, arma::uword ldc);

// y += A x for A (m x n, column-major, leading dimension lda). For m at
// least one vector's width (8 doubles, 16 floats), one sweep over A's columns
// with y in registers (core/network.cc, GemvByColumns): each y_i gets
// A_i0 x_0, A_i1 x_1, ... added in that order. Below that, BLAS GEMV.
// Dimensions must fit in the BLAS integer type.
template <typename T>
void Gemv(arma::uword m, arma::uword n, const T* a, arma::uword lda,
          const T* x, T* y);

// Largest width or batch the engine accepts (the BLAS integer type).
inline constexpr uint64_t kMaxDimension = 0x7fffffff;

}  // namespace internal

extern template class Network<double>;
extern template class Network<float>;

}  // namespace backprop

#endif  // BACKPROP_CORE_NETWORK_H_

// A fully-connected network and the four equations of backpropagation
// (Nielsen, NNDL ch. 2), evaluated for a whole mini-batch at once: one example
// per COLUMN, so x is n_0 x m and every a^l, z^l, delta^l is n_l x m.
//
// Layer numbering follows the book with the input as layer 0: w(l) maps
// a^{l-1} to z^l for l = 1..L, where L = num_layers() - 1 is the output layer.
// (API.md's layers[0] is w(1); the book's l = 2.)
#ifndef BACKPROP_CORE_NETWORK_H_
#define BACKPROP_CORE_NETWORK_H_

#include <armadillo>
#include <cstdint>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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
  // parameters in layer order, weights column-major then biases). The
  // relative error of one parameter is |g - fd| / max(|g| + |fd|, 1e-12)...
  // see network.cc for the exact definition.
  absl::StatusOr<GradientCheckResult> CheckGradients(const Mat& x,
                                                     const Mat& y, double eps,
                                                     uint32_t samples) const;

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

extern template class Network<double>;
extern template class Network<float>;

}  // namespace backprop

#endif  // BACKPROP_CORE_NETWORK_H_

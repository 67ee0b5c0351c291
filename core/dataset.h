// In-memory datasets: inputs one example per COLUMN, with either class labels
// (one-hot inside the engine) or target vectors.
#ifndef BACKPROP_CORE_DATASET_H_
#define BACKPROP_CORE_DATASET_H_

#include <armadillo>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace backprop {

// A float copy of a dataset's inputs, made the first time a float32 network
// trains on (or evaluates) the dataset and then shared by every later call,
// from any thread, instead of converting 60,000 x 784 doubles per call.
// Copying or moving a Dataset gives the new one an empty cache, so a copy
// whose inputs are then edited never sees the old values. The one rule: do
// not edit a dataset's inputs in place after float32 training has used it
// (the server's stored datasets are immutable).
class FloatInputsCache {
 public:
  FloatInputsCache() = default;
  FloatInputsCache(const FloatInputsCache&) : FloatInputsCache() {}
  FloatInputsCache(FloatInputsCache&&) noexcept : FloatInputsCache() {}
  FloatInputsCache& operator=(const FloatInputsCache&) {
    Reset();
    return *this;
  }
  FloatInputsCache& operator=(FloatInputsCache&&) noexcept {
    Reset();
    return *this;
  }

  // conv_to<fmat>(inputs), computed once. May throw std::bad_alloc (then a
  // later call tries again).
  const arma::fmat& Get(const arma::mat& inputs) const;
  bool filled() const;

 private:
  void Reset();

  mutable std::mutex mu_;
  mutable std::shared_ptr<const arma::fmat> data_;
};

struct Dataset {
  arma::mat inputs;  // feature_count x n
  // Exactly one of the two target kinds is used:
  uint32_t class_count = 0;       // > 0: labels[i] < class_count, size n
  std::vector<uint32_t> labels;
  arma::mat targets;              // target_size x n when class_count == 0
  FloatInputsCache float_inputs;  // see FloatInputsCache

  uint64_t size() const { return inputs.n_cols; }
  uint32_t feature_count() const { return inputs.n_rows; }
  // Width of a target vector: class_count for labels, targets.n_rows else.
  uint32_t output_size() const;
  bool has_labels() const { return class_count > 0; }

  // kInvalidArgument: no examples, zero width, neither or both target kinds,
  // counts that disagree, a label >= class_count, a non-finite value.
  absl::Status Validate() const;

  // Columns [first, first + count) as a new dataset (count clipped to size).
  Dataset Slice(uint64_t first, uint64_t count) const;
};

// Target matrix (output_size x n) for dataset d in element type T: one-hot
// columns for labels, the target vectors otherwise.
template <typename T>
arma::Mat<T> TargetMatrix(const Dataset& d);

// Index of the largest entry of each column (first one on ties).
template <typename T>
std::vector<uint32_t> ArgmaxColumns(const arma::Mat<T>& a);

}  // namespace backprop

#endif  // BACKPROP_CORE_DATASET_H_

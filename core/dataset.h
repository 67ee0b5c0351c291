// In-memory datasets: inputs one example per COLUMN, with either class labels
// (one-hot inside the engine) or target vectors.
#ifndef BACKPROP_CORE_DATASET_H_
#define BACKPROP_CORE_DATASET_H_

#include <armadillo>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace backprop {

struct Dataset {
  arma::mat inputs;  // feature_count x n
  // Exactly one of the two target kinds is used:
  uint32_t class_count = 0;       // > 0: labels[i] < class_count, size n
  std::vector<uint32_t> labels;
  arma::mat targets;              // target_size x n when class_count == 0

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

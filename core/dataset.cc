// Dataset checks and conversions; one example per column throughout.
#include "core/dataset.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace backprop {

const arma::fmat& FloatInputsCache::Get(const arma::mat& inputs) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (data_ == nullptr || data_->n_rows != inputs.n_rows ||
      data_->n_cols != inputs.n_cols) {
    data_ = std::make_shared<const arma::fmat>(
        arma::conv_to<arma::fmat>::from(inputs));
  }
  return *data_;
}

bool FloatInputsCache::filled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return data_ != nullptr;
}

void FloatInputsCache::Reset() {
  std::lock_guard<std::mutex> lock(mu_);
  data_.reset();
}

uint32_t Dataset::output_size() const {
  return has_labels() ? class_count : static_cast<uint32_t>(targets.n_rows);
}

absl::Status Dataset::Validate() const {
  const uint64_t n = size();
  if (n == 0) return absl::InvalidArgumentError("the dataset has no examples");
  if (inputs.n_rows == 0) {
    return absl::InvalidArgumentError("the dataset has zero input features");
  }
  const bool has_targets = targets.n_elem > 0;
  if (has_labels() && has_targets) {
    return absl::InvalidArgumentError(
        "the dataset has both labels and target vectors; use exactly one");
  }
  if (!has_labels() && !has_targets) {
    if (!labels.empty()) {
      return absl::InvalidArgumentError(
          "the dataset has labels but class_count is 0");
    }
    return absl::InvalidArgumentError(
        "the dataset has neither labels nor target vectors");
  }
  if (has_labels()) {
    if (labels.size() != n) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the dataset has ", n, " examples but ", labels.size(), " labels"));
    }
    for (size_t i = 0; i < labels.size(); ++i) {
      if (labels[i] >= class_count) {
        return absl::InvalidArgumentError(
            absl::StrCat("label ", labels[i], " of example ", i,
                         " is not below class_count ", class_count));
      }
    }
  } else {
    if (!labels.empty()) {
      return absl::InvalidArgumentError(
          "the dataset has target vectors and labels; use exactly one");
    }
    if (targets.n_cols != n) {
      return absl::InvalidArgumentError(
          absl::StrCat("the dataset has ", n, " examples but ", targets.n_cols,
                       " target vectors"));
    }
    if (!targets.is_finite()) {
      return absl::InvalidArgumentError("a target value is NaN or infinite");
    }
  }
  if (!inputs.is_finite()) {
    return absl::InvalidArgumentError("an input value is NaN or infinite");
  }
  return absl::OkStatus();
}

Dataset Dataset::Slice(uint64_t first, uint64_t count) const {
  Dataset out;
  out.class_count = class_count;
  const uint64_t n = size();
  first = std::min(first, n);
  count = std::min(count, n - first);
  if (count == 0) {
    out.inputs.set_size(inputs.n_rows, 0);
    if (!has_labels()) out.targets.set_size(targets.n_rows, 0);
    return out;
  }
  const arma::uword last = first + count - 1;
  out.inputs = inputs.cols(first, last);
  if (has_labels()) {
    if (labels.size() >= first + count) {
      out.labels.assign(labels.begin() + first, labels.begin() + first + count);
    }
  } else if (targets.n_cols >= first + count) {
    out.targets = targets.cols(first, last);
  }
  return out;
}

template <typename T>
arma::Mat<T> TargetMatrix(const Dataset& d) {
  if (!d.has_labels()) return arma::conv_to<arma::Mat<T>>::from(d.targets);
  arma::Mat<T> y(d.class_count, d.labels.size(), arma::fill::zeros);
  for (size_t i = 0; i < d.labels.size(); ++i) {
    if (d.labels[i] < d.class_count) y(d.labels[i], i) = T{1};
  }
  return y;
}

template <typename T>
std::vector<uint32_t> ArgmaxColumns(const arma::Mat<T>& a) {
  std::vector<uint32_t> out(a.n_cols, 0);
  for (arma::uword j = 0; j < a.n_cols; ++j) {
    const T* col = a.colptr(j);
    uint32_t best = 0;
    for (arma::uword i = 1; i < a.n_rows; ++i) {
      // Strictly greater keeps the first maximum on ties.
      if (col[i] > col[best]) best = static_cast<uint32_t>(i);
    }
    out[j] = best;
  }
  return out;
}

template arma::Mat<double> TargetMatrix<double>(const Dataset& d);
template arma::Mat<float> TargetMatrix<float>(const Dataset& d);
template std::vector<uint32_t> ArgmaxColumns<double>(const arma::Mat<double>&);
template std::vector<uint32_t> ArgmaxColumns<float>(const arma::Mat<float>&);

}  // namespace backprop

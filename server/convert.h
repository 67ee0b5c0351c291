// The only place where protobuf messages and Armadillo/core types meet
// (STYLE.md §1). Every function validates what came off the wire (shapes,
// counts computed without overflow, finiteness, enum ranges) BEFORE it
// allocates anything sized by it, and returns kInvalidArgument (or
// kResourceExhausted for a configured limit) with a message a person can act
// on.
//
// Layouts: a wire Matrix is row-major. For EXAMPLES (inputs, targets,
// outputs) one row is one example, and those bytes are exactly the engine's
// column-major features x examples matrix, so they convert with one copy.
// For PARAMETERS (weights) the wire matrix has the engine matrix's own shape
// (n_l x n_{l-1}), so the row-major buffer is the transpose of Armadillo's
// column-major one.
#ifndef BACKPROP_SERVER_CONVERT_H_
#define BACKPROP_SERVER_CONVERT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include <armadillo>
#include <google/protobuf/repeated_field.h>
#include <google/protobuf/timestamp.pb.h>

#include "backprop/v1/backprop.pb.h"
#include "core/dataset.h"
#include "core/network.h"
#include "core/spec.h"
#include "core/trainer.h"

namespace backprop::server {

using LayerParametersList =
    google::protobuf::RepeatedPtrField<v1::LayerParameters>;

// *_UNSPECIFIED become API.md's defaults; a value outside the proto's enum is
// kInvalidArgument (never defaulted). Does not run ValidateSpec.
absl::StatusOr<ModelSpec> SpecFromProto(const v1::ModelSpec& p);
void SpecToProto(const ModelSpec& s, v1::ModelSpec* p);

// rows >= 1, cols >= 1, exactly one value field, its length == rows * cols
// (overflow-checked), every value finite. `field` names the matrix in errors.
absl::Status ValidateMatrix(absl::string_view field, const v1::Matrix& m);

// A wire matrix of examples (rows = examples) as the engine's cols x rows
// matrix. Fails unless ValidateMatrix passes, m.cols() == expected_cols
// (`expected_what` explains where that width comes from, e.g.
// "model 'm1' expects 16 (layer_sizes[0])"), and m.rows() <= max_rows
// (kResourceExhausted).
template <typename T>
absl::StatusOr<arma::Mat<T>> ExamplesFromProto(absl::string_view field,
                                               const v1::Matrix& m,
                                               uint64_t expected_cols,
                                               absl::string_view expected_what,
                                               uint64_t max_rows);

// ExamplesFromProto's checks and result without the copy when m already
// holds T values (float_values for float, double_values for double): the
// matrix then points into m's buffer (read-only; m must outlive it and stay
// unchanged). Otherwise a converted copy. The message that explains the
// expected width is built only for the error that needs it.
template <typename T>
absl::StatusOr<arma::Mat<T>> ExamplesViewFromProto(
    absl::string_view field, const v1::Matrix& m, uint64_t expected_cols,
    absl::FunctionRef<std::string()> expected_what, uint64_t max_rows);

// The engine's features x examples matrix as wire rows = examples, in T's
// value field.
template <typename T>
void ExamplesToProto(const arma::Mat<T>& a, v1::Matrix* m);

// Targets for n examples of width output_size (one-hot for labels).
// kInvalidArgument when no target is set, the count is not n, a label is
// >= output_size, or target_values has the wrong shape.
template <typename T>
absl::StatusOr<arma::Mat<T>> TargetsFromProto(absl::string_view field,
                                              const v1::Examples& e, uint64_t n,
                                              uint32_t output_size,
                                              absl::string_view expected_what);

// Examples as a core Dataset of the given widths (labels become
// class_count = output_size).
absl::StatusOr<Dataset> DatasetFromExamples(
    absl::string_view field, const v1::Examples& e, uint32_t input_size,
    uint32_t output_size, absl::string_view model_what, uint64_t max_rows);

// A weight matrix of the given shape (wire row-major == engine shape).
template <typename T>
void ParameterToProto(const arma::Mat<T>& w, v1::Matrix* m);

// Given parameters for spec (API order: parameters[i] is layer l = i + 1).
// kInvalidArgument on a count or shape mismatch or a non-finite value.
absl::StatusOr<AnyNetwork> NetworkFromProto(const ModelSpec& spec,
                                            const LayerParametersList& p);
void NetworkToProto(const AnyNetwork& net, LayerParametersList* p);

template <typename T>
void GradientsToProto(const Gradients<T>& g, LayerParametersList* p);

// TrainRequest's hyper-parameters (not yet validated: ValidateTrainOptions).
TrainOptions TrainOptionsFromProto(const v1::TrainRequest& r);

void MetricsToProto(const EpochMetrics& m, uint64_t epochs_trained,
                    v1::EpochMetrics* p);
void ProgressToProto(const BatchProgress& b, v1::BatchProgress* p);

void TimeToProto(absl::Time t, google::protobuf::Timestamp* p);

// kResourceExhausted unless p has at most max_layers layer sizes, each at
// most max_width. Runs before SpecFromProto copies the sizes, so that nothing
// sized by a hostile spec is allocated; the message names the flag.
absl::Status CheckSpecSize(const v1::ModelSpec& p, uint32_t max_layers,
                           uint32_t max_width);

// What one upload may hold (server/limits.h has the shipped values).
struct UploadLimits {
  // Values held: 8 bytes per input or target value, 4 per label.
  uint64_t max_bytes = 0;
  // Serialized size of one chunk (the Examples message).
  uint64_t max_chunk_bytes = UINT64_MAX;
  uint64_t max_chunks = UINT64_MAX;
};

// Accumulates UploadDataset chunks. Inputs are appended example by example,
// which is the column-major features x n layout of Dataset::inputs.
class DatasetBuilder {
 public:
  // Validates the header (kInvalidArgument). kResourceExhausted when a
  // single example of the header's widths is already over max_bytes.
  // Allocates nothing.
  static absl::StatusOr<DatasetBuilder> Create(const v1::DatasetHeader& h,
                                               const UploadLimits& limits);
  static absl::StatusOr<DatasetBuilder> Create(const v1::DatasetHeader& h,
                                               uint64_t max_bytes) {
    UploadLimits l;
    l.max_bytes = max_bytes;
    return Create(h, l);
  }

  // kInvalidArgument when the chunk does not match the header;
  // kResourceExhausted when it is bigger than max_chunk_bytes, is chunk
  // max_chunks + 1, or would take the data set over max_bytes (all checked
  // before anything is appended). Nothing is appended on failure.
  absl::Status Append(const v1::Examples& chunk);

  uint64_t example_count() const { return n_; }
  // kInvalidArgument when no example was sent. Leaves the builder empty.
  absl::StatusOr<Dataset> Build();

 private:
  DatasetBuilder() = default;
  uint32_t features_ = 0;
  uint32_t class_count_ = 0;
  uint32_t target_size_ = 0;
  uint64_t max_bytes_ = 0;
  uint64_t max_chunk_bytes_ = 0;
  uint64_t max_chunks_ = 0;
  uint64_t bytes_ = 0;
  uint64_t n_ = 0;
  uint64_t chunks_ = 0;
  std::vector<double> inputs_;
  std::vector<uint32_t> labels_;
  std::vector<double> targets_;
};

}  // namespace backprop::server

#endif  // BACKPROP_SERVER_CONVERT_H_

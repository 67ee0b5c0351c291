// The client's own small, strict readers for the files users bring to
// `upload`, `predict` and `gradients`: IDX (MNIST / Fashion-MNIST, plain or
// gzip) and CSV. The client must not link core (STYLE.md §1), so this is a
// separate reader. Every size in a header is checked against the real data
// size before anything is allocated from it.
#ifndef BACKPROP_CLIENT_DATA_FILES_H_
#define BACKPROP_CLIENT_DATA_FILES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace backprop::client {

// Refuse files that decompress to more than this (a gzip bomb guard).
inline constexpr uint64_t kMaxFileBytes = uint64_t{1} << 30;

// A batch of examples, one per row (the wire layout).
struct ExampleSet {
  uint64_t rows = 0;
  uint64_t cols = 0;
  std::vector<double> inputs;    // rows * cols, row-major
  std::vector<uint32_t> labels;  // rows entries, or empty when unlabelled
  bool has_labels() const { return !labels.empty(); }
  uint32_t max_label() const;
};

// The bytes of a file, gunzipped when it is gzip (zlib reads plain files
// as they are). kNotFound, kDataLoss for corrupt gzip, kResourceExhausted
// over max_bytes.
absl::StatusOr<std::string> ReadFileMaybeGzip(
    const std::string& path, uint64_t max_bytes = kMaxFileBytes);

// An IDX images file (any rank >= 1, items flattened; u8 pixels scaled to
// [0, 1]) and, unless labels_path is empty, an IDX labels file (rank 1,
// integer type). limit > 0 keeps only the first `limit` examples.
// kInvalidArgument for bad magic, an unknown type, a size that disagrees
// with the header, NaN/Inf, or counts that differ between the two files.
absl::StatusOr<ExampleSet> LoadIdx(const std::string& images_path,
                                   const std::string& labels_path,
                                   uint64_t limit);
absl::StatusOr<ExampleSet> ParseIdx(const std::string& images,
                                    const std::string* labels, uint64_t limit);

struct CsvOptions {
  // Column (0-based; negative counts from the end, -1 = last) holding the
  // label, or no label column when has_label is false.
  bool has_label = false;
  int label_column = 0;
  bool skip_header = false;
};

// One example per non-empty line, comma-separated numbers. kInvalidArgument
// naming the line and column of a non-numeric or non-finite field, a ragged
// row, a label that is not a non-negative integer, or no rows at all.
absl::StatusOr<ExampleSet> ParseCsv(const std::string& text,
                                    const CsvOptions& options, uint64_t limit);
absl::StatusOr<ExampleSet> LoadCsv(const std::string& path,
                                   const CsvOptions& options, uint64_t limit);

// Rows given inline ("0.1,0.2,0.3"), all of the same width, no labels.
absl::StatusOr<ExampleSet> ParseValueRows(const std::vector<std::string>& rows);

}  // namespace backprop::client

#endif  // BACKPROP_CLIENT_DATA_FILES_H_
